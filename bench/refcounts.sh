#!/usr/bin/env bash
# Reference counting per proxied request, counted, not sampled: perf uprobes on the Swift runtime's
# swift_retain and swift_release (each an atomic operation) count every call the proxy makes while curl
# sends N requests in turn on one keep-alive connection, Sluice's and the NIO relay floor's
# (bench/RelayFloor), each behind the same upstream nginx. Each call is attributed to the function that
# made it (the first caller outside the runtime, from a DWARF call graph).
#
# What it is for: bench/proxy.sh moves +-5% from run to run on this host and bench/hotpath.sh leaves
# NIO and the handlers out; these counts are exact, so a change that takes a few reference counts off
# every request shows here even when no socket bench can resolve it. They are not time: an operation
# costs a few nanoseconds, and requests in turn on one connection put the event loop's per-wake-up
# work on every request (at saturation one wake-up serves dozens).
#
#   bench/refcounts.sh                           # env: N (requests, default 1000)
#   BASELINE=/path/to/sluice bench/refcounts.sh  # adds another sluice binary (say, an older commit's)
#
# Appends the figures to bench/RESULTS.md. Builds in release first; installs nginx-light, curl and
# linux-perf when missing; needs root (uprobes).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/proxies.sh
N=${N:-1000}

need=()
for t in nginx curl perf; do command -v $t >/dev/null || need+=("$t"); done
if ((${#need[@]})); then
    echo "==> installing nginx-light curl linux-perf"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light curl linux-perf >/dev/null
fi
echo "==> swift build -c release --product sluice, relay-floor"
swift build -c release --product sluice > /tmp/sluice-bench-build.log 2>&1 || { cat /tmp/sluice-bench-build.log; exit 1; }
swift build -c release --product relay-floor >> /tmp/sluice-bench-build.log 2>&1 || { cat /tmp/sluice-bench-build.log; exit 1; }
BIN="$(swift build -c release --show-bin-path)"
if [ -n "${BASELINE:-}" ] && [ ! -x "$BASELINE" ]; then echo "error: BASELINE=$BASELINE is not an executable" >&2; exit 2; fi

swiftcore=$(ldd "$BIN/sluice" | awk '$1 == "libswiftCore.so" { print $3 }')
[ -n "$swiftcore" ] || { echo "error: sluice does not link libswiftCore.so dynamically: nothing to probe" >&2; exit 1; }
for fn in swift_retain swift_release; do
    perf probe -q -x "$swiftcore" "$fn" >/dev/null 2>&1 || true # already there from an earlier run: fine
    perf probe -l 2>/dev/null | grep -q "probe_libswiftCore:$fn " || { echo "error: perf cannot probe $fn in $swiftcore" >&2; exit 1; }
done

D=$(mktemp -d)
cleanup() {
    for p in "$D"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
    sleep 0.3; rm -rf "$D"
}
trap cleanup EXIT

port() { python3 -c 'import sys; sys.path.insert(0, "bench"); import benchlib; print(benchlib.free_port())'; }
UP=$(port)
body='{"model_name":"m","outputs":[{"name":"p","datatype":"FP32","shape":[1],"data":[0.42]}]}'
cat > "$D/up.conf" <<C
daemon off; worker_processes 1; pid $D/up.pidfile; error_log /dev/null crit;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { default_type application/json; return 200 '$body'; } } }
C
# One version: the split's draw is the same whichever version it picks, and one upstream is all the relay has.
printf '{"revision": 1, "routes": [{"name": "m", "pathPrefix": "/", "backends": [
  {"version": "v1", "weight": 100, "endpoints": ["http://127.0.0.1:%s"]}]}]}\n' "$UP" > "$D/routes.json"

declare -A PORT PID
# The proxies on CPU 0; nginx, curl and perf on CPU 1, so perf keeps up with the events.
taskset -c 1 nginx -c "$D/up.conf" -p "$D" & echo $! > "$D/up.pid"
start_proxies "$D/routes.json" "$UP"
for p in "$UP"; do python3 -c "import sys; sys.path.insert(0, 'bench'); import benchlib; benchlib.wait_port($p)"; done

for name in "${TARGETS[@]}"; do
    url="http://127.0.0.1:${PORT[$name]}/v2/models/m/infer"
    # Warm: the upstream connection is pooled (Sluice) and the code paths are paged in.
    curl -s -o /dev/null "$url?[1-50]"
    echo "==> $name: $N requests in turn on one connection, every retain and release counted"
    # A 16 MB ring: with perf's default, events are lost at this rate and the counts come out short.
    taskset -c 1 perf record -q -m 4096 -e probe_libswiftCore:swift_retain -e probe_libswiftCore:swift_release --call-graph dwarf,1024 \
        -p "${PID[$name]}" -o "$D/$name.data" -- curl -s -o /dev/null -w '%{http_code}\n' "$url?[1-$N]" > "$D/$name.codes"
    ok=$(grep -c '^200$' "$D/$name.codes" || true)
    [ "$ok" = "$N" ] || { echo "error: $name answered $ok of $N requests with 200" >&2; exit 1; }
    lost=$(perf report -i "$D/$name.data" --stats 2>/dev/null | awk '/LOST_SAMPLES events:/ { n += $3 } END { print n + 0 }')
    [ "$lost" = 0 ] || { echo "error: perf lost $lost events counting $name: the counts would be short (try a smaller N)" >&2; exit 1; }
    perf script -i "$D/$name.data" 2>/dev/null > "$D/$name.txt"
done

python3 - "$D" "$N" "$(git rev-parse --short HEAD)" "${TARGETS[@]}" <<'P' | tee "$D/report"
import collections, re, subprocess, sys
folder, n, commit, targets = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
frame = re.compile(r"^\s*[0-9a-f]+ (.+?)(?:\+0x[0-9a-f]+)? \(")

def count(name):
    """Calls per request by kind, and by the first caller outside the runtime."""
    kinds, callers = collections.Counter(), collections.Counter()
    for sample in open(f"{folder}/{name}.txt").read().split("\n\n"):
        lines = sample.strip().split("\n")
        if len(lines) < 2:
            continue
        kind = "retain" if "swift_retain" in lines[0] else "release"
        kinds[kind] += 1
        functions = [m.group(1) for m in map(frame.match, lines[1:]) if m]
        caller = next((f for f in functions[1:] if not f.startswith("swift_") and not f.startswith("swift::")), "?")
        callers[caller] += 1
    return {k: v / n for k, v in kinds.items()}, {k: v / n for k, v in callers.items()}

def demangled(symbols):
    """Swift symbols as `swift demangle --simplified` reads them, without argument lists."""
    out = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(symbols),
                         capture_output=True, text=True, check=True).stdout.split("\n")
    return [re.sub(r"\(.*", "", line)[:100] for line in out[: len(symbols)]]

counted = {name: count(name) for name in targets}
print(f"commit {commit}, {n} requests in turn on one connection; swift_retain and swift_release calls a request")
for name, (kinds, _) in counted.items():
    print(f"{name:9} retain {kinds.get('retain', 0):6.1f}  release {kinds.get('release', 0):6.1f}  total {sum(kinds.values()):6.1f}")
sluice_total = sum(counted["sluice"][0].values())
relay_total = sum(counted["relay"][0].values())
print(f"sluice - relay: {sluice_total - relay_total:+.1f} a request")
if "baseline" in counted:
    print(f"sluice - baseline: {sluice_total - sum(counted['baseline'][0].values()):+.1f} a request")
own = {k: v for k, v in counted["sluice"][1].items() if "SluiceProxy" in k}
print(f"Sluice's own functions: {sum(own.values()):.1f} a request; the most:")
top = sorted(own.items(), key=lambda kv: -kv[1])[:12]
for (fn, calls), name in zip(top, demangled([fn for fn, _ in top])):
    print(f"  {calls:5.1f}  {name}")
P

python3 - "$D/report" <<'P'
import sys, datetime
sys.path.insert(0, "bench")
import benchlib
text = open(sys.argv[1]).read()
benchlib.append_results(
    "Reference counting per request (`bench/refcounts.sh`)",
    "Every swift_retain and swift_release call the proxy makes per request, counted with perf uprobes "
    "(exact, not sampled) while curl sends requests in turn on one connection; Sluice next to the NIO relay floor.",
    f"### {datetime.date.today()}: `bench/refcounts.sh` (appended by the script)\n\n```\n{text.strip()}\n```\n")
P
