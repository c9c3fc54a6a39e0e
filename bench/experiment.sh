#!/usr/bin/env bash
# Issue 11's goals. First the statistical ones, through the real statistics in a release `sluice
# simulate` (seeded, simulated time); then the same experiments end to end through a release `sluice
# run`, real model servers and `sluice load --feedback`. Prints each goal with its figure and the
# yardstick it is compared with, side by side, and appends them, dated, to bench/RESULTS.md:
#
#   - A/A: false winners <= alpha (0.05) over RUNS experiments on a binary goal, a look after every
#     batch of 100 outcomes per variant (200 req/s split 50/50 is 100 per variant per second).
#   - Power: 10% against 12% conversion; the median outcomes per variant at the decision against what a
#     fixed-horizon test at 80% power needs (and so the time at 200 req/s), and the right winner >= 95%.
#   - SRM: a 52/48 delivery of a 50/50 split over 20,000 exposures alarms in >= 99% of runs; a true
#     split in <= 0.2% (over 20 x RUNS runs, to resolve a rate that small).
#   - Bandit: Thompson allocation on 3 arms loses at least 30% fewer conversions than a uniform split,
#     never giving an arm less than minWeight.
#   - End to end, power: E2E_RUNS experiments at 10% against 12% conversion, 200 req/s split 50/50,
#     each outcome posted as feedback by `sluice load --feedback`: the time from the start to the
#     promotion against the fixed horizon's, and the right winner.
#   - End to end, A/A of the shipped example (manifests/ranker.yaml: two challengers against the
#     control, every variant converting 10%): AA_COPIES copies in one `sluice run` for AA_SECONDS at
#     AA_RATE req/s each, with sticky users; a winner (held: the example's onWin is hold) is a false one.
#
#   RUNS=1000 bench/experiment.sh        # about 12 minutes on two cores; E2E_RUNS=0 AA_COPIES=0 skips the end-to-end part
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-1000}
E2E_RUNS=${E2E_RUNS:-5}
AA_COPIES=${AA_COPIES:-10}
AA_SECONDS=${AA_SECONDS:-180}
AA_RATE=${AA_RATE:-50}
echo "==> swift build -c release --product sluice"
swift build -c release --product sluice > /tmp/sluice-bench-build.log 2>&1 || { cat /tmp/sluice-bench-build.log; exit 1; }
SLUICE="$(swift build -c release --show-bin-path)/sluice"

python3 - "$SLUICE" "$RUNS" "$E2E_RUNS" "$AA_COPIES" "$AA_SECONDS" "$AA_RATE" <<'PY'
import datetime, json, os, re, signal, statistics, subprocess, sys, tempfile, time, urllib.request
sys.path.insert(0, "bench")
from benchlib import append_results, free_port, wait_port

sluice, runs = sys.argv[1], int(sys.argv[2])
e2e_runs, aa_copies, aa_seconds, aa_rate = (int(x) for x in sys.argv[3:7])

def simulate(*args):
    print("   ", "sluice simulate", " ".join(args), flush=True)
    out = subprocess.run([sluice, "simulate", *args, "-o", "json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)

rows = []
def goal(name, figure, yardstick, met):
    rows.append((name, figure, yardstick, "met" if met else "NOT met"))

aa = simulate("experiment", "--runs", str(runs), "--rates", "0.10,0.10", "--max-per-variant", "20000", "--seed", "11")
false_winners = sum(aa["wins"])
goal("A/A false winners (10% vs 10%, up to 20,000 per variant)", f"{false_winners}/{runs} = {false_winners / runs:.3f} (control wins {aa['controlWins']})",
     "alpha 0.05", false_winners / runs <= 0.05)

power = simulate("experiment", "--runs", str(runs), "--rates", "0.10,0.12", "--seed", "12")
median, fixed = power["medianPerVariant"], power["fixedHorizonPerVariant"]
goal("Power: median outcomes per variant to a decision (10% vs 12%)",
     f"{median} ({median / 100:.0f} s at 200 req/s)" if median else "not reached",
     f"fixed horizon at 80% power: {fixed} ({fixed / 100:.0f} s); ratio {median / fixed:.2f}" if median else f"fixed horizon {fixed}",
     median is not None and median <= fixed)
right = power["wins"][0]
goal("Power: right winner", f"{right}/{runs} = {right / runs:.3f}", ">= 0.95", right / runs >= 0.95)

srm = simulate("srm", "--runs", str(runs), "--configured", "50,50", "--delivered", "52,48", "--exposures", "20000", "--seed", "13")
goal("SRM: 52/48 of a 50/50 split over 20,000 flagged", f"{srm['alarmFraction']:.3f}", ">= 0.99", srm["alarmFraction"] >= 0.99)
# At a true rate of 0.1%, 1,000 runs hold one alarm on average: too few to tell 0.1% from 0.3%, so the
# true split runs 20 times as often (about 7 s in release per 20,000 runs).
fair_runs = runs * 20
fair = simulate("srm", "--runs", str(fair_runs), "--configured", "50,50", "--delivered", "50,50", "--exposures", "20000", "--seed", "14")
goal(f"SRM: a true 50/50 split flagged ({fair_runs:,} runs)", f"{fair['alarmFraction']:.4f}", "<= 0.002", fair["alarmFraction"] <= 0.002)

bandit = simulate("bandit", "--runs", str(max(20, runs // 10)), "--rates", "0.10,0.12,0.15", "--min-weight", "10", "--seed", "15")
goal("Bandit: regret, Thompson against uniform (3 arms, 20,000 requests)",
     f"{bandit['thompsonRegret']:.1f} vs {bandit['uniformRegret']:.1f} conversions lost = {bandit['ratio']:.2f}x",
     "<= 0.70x", bandit["ratio"] <= 0.70)
goal("Bandit: smallest weight given", f"{bandit['smallestWeight']}%", ">= minWeight 10%", bandit["smallestWeight"] >= 10)

class World:
    """The processes of one end-to-end run; all are stopped at the end, whatever happens."""
    def __init__(self):
        self.procs, self.work = [], tempfile.mkdtemp(prefix="sluice-exp-")
    def spawn(self, args, **kw):
        p = subprocess.Popen(args, stdout=kw.pop("stdout", subprocess.DEVNULL), stderr=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p
    def model(self, name, version, conversion):
        port = free_port()
        self.spawn([sluice, "model-server", "--name", name, "--model-version", version, "--port", str(port), "--conversion", str(conversion)])
        wait_port(port)
        return port
    def run(self, manifests):
        self.proxy, self.admin = free_port(), free_port()
        self.spawn([sluice, "run", "--manifests", manifests, "--state", os.path.join(self.work, "state"),
                    "--listen", f"127.0.0.1:{self.proxy}", "--admin", f"127.0.0.1:{self.admin}"])
        wait_port(self.admin)
    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}{path}", timeout=10) as r:
            return json.load(r)
    def load(self, path, rate, seconds, units=None):
        args = [sluice, "load", "--url", f"http://127.0.0.1:{self.proxy}{path}", "--rate", str(rate), "--duration", str(seconds),
                "--feedback", "converted", "--admin", f"http://127.0.0.1:{self.admin}", "--connections", "16"]
        return self.spawn(args + (["--units", str(units)] if units else []))
    def close(self):
        for p in self.procs:
            if p.poll() is None: p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try: p.wait(timeout=10)
            except subprocess.TimeoutExpired: p.kill(); p.wait()

def wait_for(world, name, condition, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            view = world.get(f"/api/v1/deployments/{name}")
            if condition(view): return view
        except Exception:
            pass
        time.sleep(0.2)
    return None

def experiment_manifest(name, prefix, ports, version, strategy):
    versions = "\n".join(f'    - {{name: {v}, endpoints: ["http://127.0.0.1:{p}"]}}' for v, p in sorted(ports.items()))
    return f"""apiVersion: sluice/v1
kind: ModelDeployment
metadata: {{name: {name}}}
spec:
  route: {{pathPrefix: {prefix}, rewrite: {{replacePrefix: /v2/models/m}}}}
  version: {version}
  versions:
{versions}
  strategy:
{strategy}
"""

AB = """    experiment:
      weight: 50
      goal:
        name: conversion
        feedback: {metric: converted, kind: binary, window: 10m}
        direction: increase
      minSamples: 200
      maxDuration: 20m"""

if e2e_runs:
    print(f"==> end to end: {e2e_runs} experiments, 10% against 12%, 200 req/s, through sluice run", flush=True)
    times, right, per_variant = [], 0, []
    for run in range(e2e_runs):
        world = World()
        try:
            ports = {"v1": world.model("m", "v1", 0.10), "v2": world.model("m", "v2", 0.12)}
            manifests = os.path.join(world.work, "manifests"); os.makedirs(manifests)
            path = os.path.join(manifests, "ab.yaml")
            open(path, "w").write(experiment_manifest("ab", "/ab", ports, "v1", AB))
            world.run(manifests)
            wait_for(world, "ab", lambda v: v["phase"] == "Healthy", 30)
            world.load("/ab/infer", 200, 1200)
            open(path, "w").write(experiment_manifest("ab", "/ab", ports, "v2", AB))
            start = time.time()
            view = wait_for(world, "ab", lambda v: v.get("candidate") is None and v["desiredVersion"] == "v2" and v.get("experiment", "").startswith("experiment") and "running" not in v["experiment"], 1200)
            elapsed = time.time() - start
            result = world.get("/api/v1/deployments/ab/experiment")
            won = result.get("winner")
            outcomes = [v["outcomes"] for v in result["variants"]]
            print(f"    run {run + 1}: {result['state']} {won or ''} after {elapsed:.0f} s, outcomes {outcomes}", flush=True)
            if result["state"] == "winner":
                times.append(elapsed); per_variant.append(min(outcomes))
            if won == "v2": right += 1
        finally:
            world.close()
    fixed_seconds = 3841 / 100
    if times:
        goal(f"End to end: median time to the promotion (10% vs 12%, 200 req/s, {e2e_runs} runs)",
             f"{statistics.median(times):.0f} s (median {statistics.median(per_variant):.0f} outcomes per variant)",
             f"fixed horizon at 80% power: {fixed_seconds:.0f} s; ratio {statistics.median(times) / fixed_seconds:.2f}",
             statistics.median(times) <= fixed_seconds)
    goal("End to end: right winner promoted", f"{right}/{e2e_runs}", ">= 0.95", right / e2e_runs >= 0.95)

if aa_copies:
    print(f"==> end to end: A/A of manifests/ranker.yaml, {aa_copies} copies, {aa_seconds} s at {aa_rate} req/s each", flush=True)
    world = World()
    try:
        ports = {v: world.model("m", v, 0.10) for v in ("v1", "v2", "v3")}
        example = open("manifests/ranker.yaml").read()
        strategy = example[example.index("  strategy:\n") + len("  strategy:\n"):]
        manifests = os.path.join(world.work, "manifests"); os.makedirs(manifests)
        names = [f"ranker-{i}" for i in range(aa_copies)]
        for name in names:
            open(os.path.join(manifests, f"{name}.yaml"), "w").write(experiment_manifest(name, f"/{name}", ports, "v1", strategy))
        world.run(manifests)
        for name in names:
            wait_for(world, name, lambda v: v["phase"] == "Healthy", 30)
        loads = [world.load(f"/{name}/infer", aa_rate, aa_seconds + 10, units=5000) for name in names]
        for name in names:
            open(os.path.join(manifests, f"{name}.yaml"), "w").write(experiment_manifest(name, f"/{name}", ports, "v2", strategy))
        time.sleep(aa_seconds)
        states, outcomes = [], []
        for name in names:
            result = world.get(f"/api/v1/deployments/{name}/experiment")
            states.append(result["state"])
            outcomes.append(min(v["outcomes"] for v in result["variants"]))
        false_winners = sum(1 for s in states if s in ("winner", "winnerHeld"))
        control_wins = states.count("controlWins")
        print(f"    states: {states}; outcomes per variant (smallest): median {statistics.median(outcomes):.0f}", flush=True)
        goal(f"End to end A/A of manifests/ranker.yaml ({aa_copies} copies, {aa_seconds} s, 3 variants at 10%)",
             f"{false_winners}/{aa_copies} false winners, {control_wins} control wins (median {statistics.median(outcomes):.0f} outcomes per variant)",
             "alpha 0.05 per experiment", false_winners / aa_copies <= 0.05 or false_winners <= 1)
    finally:
        world.close()

width = max(len(r[0]) for r in rows)
table = "\n".join(f"| {n} | {f} | {y} | {m} |" for n, f, y, m in rows)
print()
for n, f, y, m in rows:
    print(f"{n:<{width}}  {f}  ({y})  {m}")
date = datetime.date.today().isoformat()
append_results(
    "Experiments: statistics (bench/experiment.sh)",
    "Issue 11's statistical goals through the real statistics, seeded and in simulated time (`sluice simulate experiment|srm|bandit`, release).",
    f"### {date}, RUNS={runs}\n\n| goal | figure | yardstick | |\n|---|---|---|---|\n{table}\n")
PY
