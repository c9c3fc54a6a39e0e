#!/usr/bin/env bash
# Manifest change → new weights live: how long from writing a manifest to the proxy serving the new
# version. Goal (issue 4): p99 ≤ 1 s.
#
# Builds Sluice in release mode, starts two demo model servers and `sluice run` on loopback, then
# changes spec.version back and forth CHANGES times (default 40). The canary's first step sends 100% to
# the new version, and going back to stable is immediate, so every change should be visible at once.
# A probe polls the proxy every 2 ms and records when the new version answers.
set -euo pipefail
cd "$(dirname "$0")/.."
CHANGES=${CHANGES:-40}
echo "==> swift build -c release --product sluice"
swift build -c release --product sluice > /tmp/sluice-bench-build.log 2>&1 || { cat /tmp/sluice-bench-build.log; exit 1; }
SLUICE="$(swift build -c release --show-bin-path)/sluice"
D=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$D"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
P1=$(free_port); P2=$(free_port); PROXY=$(free_port); ADMIN=$(free_port)
"$SLUICE" model-server --name m --model-version v1 --port "$P1" > /dev/null & pids+=($!)
"$SLUICE" model-server --name m --model-version v2 --port "$P2" > /dev/null & pids+=($!)
mkdir -p "$D/m"
manifest() {
    cat > "$D/m/.next" <<M
apiVersion: sluice/v1
kind: ModelDeployment
metadata: {name: m}
spec:
  route: {pathPrefix: /}
  version: $1
  versions:
    - {name: v1, endpoints: ["http://127.0.0.1:$P1"]}
    - {name: v2, endpoints: ["http://127.0.0.1:$P2"]}
  strategy:
    canary: {steps: [{setWeight: 100}, {pause: {}}]}
M
    mv "$D/m/.next" "$D/m/m.yaml"
}
manifest v1
"$SLUICE" run --manifests "$D/m" --state "$D/state" --listen "127.0.0.1:$PROXY" --admin "127.0.0.1:$ADMIN" --event-loops 1 > "$D/run.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PROXY) 2>/dev/null && break; sleep 0.1; done

python3 - "$PROXY" "$CHANGES" "$D" <<'PY'
import http.client, sys, time, os, statistics
port, changes, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def manifest(version):
    text = open(os.path.join(work, "m", "m.yaml")).read()
    for v in ("v1", "v2"):
        text = text.replace(f"  version: {v}\n", f"  version: {version}\n")
    tmp = os.path.join(work, "m", ".next")
    open(tmp, "w").write(text)
    os.replace(tmp, os.path.join(work, "m", "m.yaml"))
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
def served():
    conn.request("GET", "/v2/models/m")
    r = conn.getresponse(); r.read()
    return r.getheader("x-sluice-version")
deadline = time.time() + 20
while served() != "v1":
    if time.time() > deadline: sys.exit("v1 never served")
    time.sleep(0.05)
delays = []
version = "v1"
for i in range(changes):
    version = "v2" if version == "v1" else "v1"
    start = time.monotonic()
    manifest(version)
    while served() != version:
        if time.monotonic() - start > 10: sys.exit(f"change {i} to {version} not live after 10 s")
        time.sleep(0.002)
    delays.append(time.monotonic() - start)
    time.sleep(0.1)
delays.sort()
p = lambda q: delays[min(len(delays) - 1, int(q * len(delays)))]
print(f"changes={len(delays)} p50={p(0.5)*1000:.0f}ms p90={p(0.9)*1000:.0f}ms p99={p(0.99)*1000:.0f}ms max={delays[-1]*1000:.0f}ms  (goal p99 <= 1000ms)")
PY
