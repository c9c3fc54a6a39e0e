#!/usr/bin/env bash
# Automatic rollback: how fast a bad candidate loses its traffic, and how often a good one is rolled
# back by mistake. Goals (issue 5): median <= 10 s for +5 points of errors at 10% canary and 200 req/s;
# under 1 s for connection refused; false rollbacks on A/A canaries <= 1%.
#
# 1. A large simulation in the pure core (`sluice simulate`, the same judge as `sluice run`):
#    2,000 A/A canaries and 2,000 canaries with +5 points of errors, in simulated time.
# 2. Real runs through the release binary: demo model servers, `sluice run`, and `sluice load` at
#    RATE req/s (default 200) with the canary at 10%. Scenarios, RUNS each (default 5):
#      errors   stable 1% errors, candidate 6%        (compareTo: stable, the sequential test)
#      latency  stable 20 ms, candidate 40 ms (x2)    (latencyP50, compareTo: stable: quantile confidence bounds)
#      refused  the candidate's port refuses          (the tripwire)
#      aa       both 1% errors and 20 ms, for 20 s    (every rollback is a false alarm)
#    Detection time = from the candidate's first response to its last one, as the load generator saw
#    them: the candidate is bad from its first response, and after the rollback it serves nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
RATE=${RATE:-200}
echo "==> swift build -c release --product sluice"
swift build -c release --product sluice > /tmp/sluice-bench-build.log 2>&1 || { cat /tmp/sluice-bench-build.log; exit 1; }
SLUICE="$(swift build -c release --show-bin-path)/sluice"

echo "==> simulation in the pure core (sluice simulate, 2,000 runs each)"
"$SLUICE" simulate --runs 2000 --stable-error-rate 0.01 --candidate-error-rate 0.01 --rate "$RATE" --canary 10 --seconds 120 --seed 11
"$SLUICE" simulate --runs 2000 --stable-error-rate 0.01 --candidate-error-rate 0.06 --rate "$RATE" --canary 10 --seconds 120 --seed 12

echo "==> real runs: RUNS=$RUNS per scenario, $RATE req/s, canary at 10%"
python3 - "$SLUICE" "$RUNS" "$RATE" <<'PY'
import datetime, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request
sluice, runs, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

sys.path.insert(0, "bench")
from benchlib import free_port, wait_port

METRICS = {
    "errors": '{name: errors, builtin: errorRate, compareTo: stable, minSamples: 20}',
    "latency": '{name: latency, builtin: latencyP50, compareTo: stable, minSamples: 10}',
}

def manifest(version, p1, p2, metrics):
    lines = "\n".join(f"          - {METRICS[m]}" for m in metrics)
    return f"""apiVersion: sluice/v1
kind: ModelDeployment
metadata: {{name: m}}
spec:
  route: {{pathPrefix: /v2/models/m}}
  version: {version}
  versions:
    - {{name: v1, endpoints: ["http://127.0.0.1:{p1}"]}}
    - {{name: v2, endpoints: ["http://127.0.0.1:{p2}"]}}
  strategy:
    canary:
      steps: [{{setWeight: 10}}, {{pause: {{duration: 10m}}}}]
      analysis:
        interval: 1s
        metrics:
{lines}
"""

def write(path, text):
    tmp = path + ".next"; open(tmp, "w").write(text); os.replace(tmp, path)

def phase(admin):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/api/v1/deployments/m", timeout=2) as r:
        view = json.load(r)
    return view["phase"], view["message"]

def run(scenario):
    work = tempfile.mkdtemp(prefix="sluice-rollback-")
    procs = []
    try:
        p1, p2, proxy, admin = free_port(), free_port(), free_port(), free_port()
        v1_args = {"errors": ["--error-rate", "0.01"], "latency": ["--latency", "20"], "refused": [], "aa": ["--error-rate", "0.01", "--latency", "20"]}[scenario]
        v2_args = {"errors": ["--error-rate", "0.06"], "latency": ["--latency", "40"], "aa": ["--error-rate", "0.01", "--latency", "20"]}.get(scenario)
        procs.append(subprocess.Popen([sluice, "model-server", "--name", "m", "--model-version", "v1", "--port", str(p1)] + v1_args, stdout=subprocess.DEVNULL))
        if v2_args is not None:
            procs.append(subprocess.Popen([sluice, "model-server", "--name", "m", "--model-version", "v2", "--port", str(p2)] + v2_args, stdout=subprocess.DEVNULL))
            wait_port(p2)
        wait_port(p1)
        metrics = {"errors": ["errors"], "latency": ["latency"], "refused": ["errors"], "aa": ["errors", "latency"]}[scenario]
        os.mkdir(os.path.join(work, "m"))
        path = os.path.join(work, "m", "m.yaml")
        write(path, manifest("v1", p1, p2, metrics))
        log = open(os.path.join(work, "run.log"), "w")
        procs.append(subprocess.Popen([sluice, "run", "--manifests", os.path.join(work, "m"), "--state", os.path.join(work, "state"),
                                       "--listen", f"127.0.0.1:{proxy}", "--admin", f"127.0.0.1:{admin}", "--event-loops", "1"], stdout=log, stderr=log))
        wait_port(proxy); wait_port(admin)
        load = subprocess.Popen([sluice, "load", "--url", f"http://127.0.0.1:{proxy}/v2/models/m/infer", "--rate", str(rate), "--duration", "120"],
                                stdout=subprocess.PIPE, text=True)
        procs.append(load)
        time.sleep(2)
        write(path, manifest("v2", p1, p2, metrics))
        limit = 20 if scenario == "aa" else 60
        deadline = time.time() + limit
        state = ("", "")
        while time.time() < deadline:
            state = phase(admin)
            if state[0] == "Degraded": break
            time.sleep(0.05)
        time.sleep(0.5)  # let responses in flight land
        load.send_signal(signal.SIGTERM)
        out, _ = load.communicate(timeout=30)
        report = json.loads(out)
        v2 = report["versions"].get("v2")
        rolled_back = state[0] == "Degraded"
        took = (v2["last"] - v2["first"]) if (v2 and rolled_back) else None
        return rolled_back, took, state[1]
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try: p.wait(timeout=10)
            except subprocess.TimeoutExpired: p.kill()
        shutil.rmtree(work, ignore_errors=True)

def quantile(values, q):
    values = sorted(values); return values[min(len(values) - 1, max(0, int(q * len(values) + 0.999999) - 1))]

report = [f"### {datetime.date.today().isoformat()}: `RUNS={runs} RATE={rate} bench/rollback.sh` (real runs; the simulation's lines are printed above)", "",
          "| scenario | rolled back | median | p90 | max | goal |", "|---|---|---|---|---|---|"]
examples = []
for scenario, goal in [("errors", "median <= 10 s"), ("latency", "-"), ("refused", "< 1 s"), ("aa", "no rollback")]:
    results = [run(scenario) for _ in range(runs)]
    times = [t for rb, t, _ in results if t is not None]
    rolled = sum(1 for rb, _, _ in results if rb)
    if scenario == "aa":
        print(f"{scenario:8} rolled back {rolled}/{runs} A/A canaries in 20 s each  (goal: false rollbacks <= 1%)")
        report.append(f"| aa (20 s each) | **{rolled}/{runs}** | – | – | – | {goal} |")
        for rb, _, message in results:
            if rb: print(f"         false rollback: {message}")
        continue
    if not times:
        print(f"{scenario:8} rolled back {rolled}/{runs}; no detection time measured")
        report.append(f"| {scenario} | {rolled}/{runs} | – | – | – | {goal} |")
        continue
    print(f"{scenario:8} rolled back {rolled}/{runs}  median {statistics.median(times):.2f} s  p90 {quantile(times, 0.9):.2f} s  max {max(times):.2f} s  (goal: {goal})")
    print(f"         e.g. {results[0][2]}")
    report.append(f"| {scenario} | {rolled}/{runs} | **{statistics.median(times):.2f} s** | {quantile(times, 0.9):.2f} s | {max(times):.2f} s | {goal} |")
    examples.append(results[0][2])
text = "\n".join(report + [""] + [f"- `{e}`" for e in examples])
print(text)
from benchlib import append_results
append_results("Automatic rollback (`bench/rollback.sh`)", "", text)
PY
