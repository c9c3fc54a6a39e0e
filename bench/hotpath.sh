#!/usr/bin/env bash
# Sluice's own work for one proxied request, without sockets: the `hotpath` loop (bench/HotPath, over
# `HotPathBenchmark` in SluiceProxy) parses a client's head, routes it, draws a version, writes the
# upstream's head, parses the upstream's whole response, writes the client's head with the body merged
# in and counts the response, millions of times on one pinned core. It prints nanoseconds a request.
#
# What it is for: bench/profile.sh samples the same work inside the running proxy, where it moves a few
# percent from run to run; this loop resolves a change of about 2% in the code a request runs, so each
# step of a change to the request path can be measured on its own. It leaves out NIO, the kernel and
# cache misses on connections gone cold, which bench/proxy.sh and bench/profile.sh measure.
#
#   bench/hotpath.sh                            # env: ROUNDS (default 10), N (requests a round, default 2000000)
#   BASELINE=/path/to/hotpath bench/hotpath.sh  # another build of the loop (say, an older commit's), in turns
#
# With BASELINE, the two take turns in a random order each round, and the figure to quote is the median of
# the per-round ratios (the host is noisy). Appends the figures to bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-10}; N=${N:-2000000}
echo "==> swift build -c release --product hotpath"
swift build -c release --product hotpath > /tmp/sluice-hotpath-build.log 2>&1 || { cat /tmp/sluice-hotpath-build.log; exit 1; }
BIN="$(swift build -c release --show-bin-path)/hotpath"
if [ -n "${BASELINE:-}" ] && [ ! -x "$BASELINE" ]; then echo "error: BASELINE=$BASELINE is not an executable" >&2; exit 2; fi

D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
# The request wrk sends and the answer bench/proxy.sh's nginx gives, at the same 90/10 split.
printf 'GET /v2/models/m/infer HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n' > "$D/request"
body='{"model_name":"m","outputs":[{"name":"p","datatype":"FP32","shape":[1],"data":[0.42]}]}'
printf 'HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 13:00:00 GMT\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n%s' \
    "${#body}" "$body" > "$D/response"
printf '{"revision": 1, "routes": [{"name": "m", "pathPrefix": "/", "backends": [
  {"version": "v2", "weight": 10, "endpoints": ["http://127.0.0.1:1"]},
  {"version": "v1", "weight": 90, "endpoints": ["http://127.0.0.1:2"]}]}]}\n' > "$D/routes.json"

run() { taskset -c 0 "$1" "$N" "$D/routes.json" "$D/request" "$D/response" | cut -d' ' -f1; }
TARGETS=(sluice); [ -n "${BASELINE:-}" ] && TARGETS+=(baseline)
declare -A PATHS=([sluice]="$BIN" [baseline]="${BASELINE:-}")
: > "$D/figures"
for round in $(seq "$ROUNDS"); do
    line="  round $round:"
    for name in $(printf '%s\n' "${TARGETS[@]}" | shuf); do
        ns=$(run "${PATHS[$name]}")
        echo "$round $name $ns" >> "$D/figures"
        line+=" $name=${ns}ns"
    done
    echo "$line"
done

python3 - "$D/figures" "$(git rev-parse --short HEAD)" "$ROUNDS" "$N" <<'P' | tee "$D/report"
import statistics, sys
from collections import defaultdict
rows = defaultdict(dict)
for line in open(sys.argv[1]):
    round_, name, ns = line.split()
    rows[name][round_] = float(ns)
med = statistics.median
print(f"commit {sys.argv[2]}, {sys.argv[3]} rounds of {sys.argv[4]} requests, one pinned core")
for name, by_round in rows.items():
    values = list(by_round.values())
    print(f"{name:9} ns a request: median {med(values):.1f}, min {min(values):.1f}")
if "baseline" in rows:
    ratios = [rows["sluice"][r] / rows["baseline"][r] for r in rows["sluice"] if r in rows["baseline"]]
    print(f"sluice/baseline ns a request: median of per-round ratios {med(ratios):.3f}")
P

python3 - "$D/report" <<'P'
import sys, datetime
sys.path.insert(0, "bench")
import benchlib
text = open(sys.argv[1]).read()
benchlib.append_results(
    "Request path without sockets (`bench/hotpath.sh`)",
    "Sluice's own work for one request (parse, route, draw, write the upstream's head, parse the answer, write "
    "the client's head, count), timed in a loop on one core: nanoseconds a request. No NIO, no kernel.",
    f"### {datetime.date.today()}: `bench/hotpath.sh` (appended by the script)\n\n```\n{text.strip()}\n```\n")
P
