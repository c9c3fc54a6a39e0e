#!/usr/bin/env bash
# Issue 11's statistical goals, through the real statistics in a release `sluice simulate` (seeded,
# simulated time; the end-to-end experiment through the proxy is still to build). Prints each goal with
# its figure and the yardstick it is compared with, side by side, and appends them, dated, to
# bench/RESULTS.md:
#
#   - A/A: false winners <= alpha (0.05) over RUNS experiments on a binary goal, a look after every
#     batch of 100 outcomes per variant (200 req/s split 50/50 is 100 per variant per second).
#   - Power: 10% against 12% conversion; the median outcomes per variant at the decision against what a
#     fixed-horizon test at 80% power needs (and so the time at 200 req/s), and the right winner >= 95%.
#   - SRM: a 52/48 delivery of a 50/50 split over 20,000 exposures alarms in >= 99% of runs; a true
#     split in <= 0.2% (over 20 x RUNS runs, to resolve a rate that small).
#   - Bandit: Thompson allocation on 3 arms loses at least 30% fewer conversions than a uniform split,
#     never giving an arm less than minWeight.
#
#   RUNS=1000 bench/experiment.sh        # about 5 minutes on two cores
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-1000}
echo "==> swift build -c release --product sluice"
swift build -c release --product sluice > /tmp/sluice-bench-build.log 2>&1 || { cat /tmp/sluice-bench-build.log; exit 1; }
SLUICE="$(swift build -c release --show-bin-path)/sluice"

python3 - "$SLUICE" "$RUNS" <<'PY'
import datetime, json, subprocess, sys
sys.path.insert(0, "bench")
from benchlib import append_results

sluice, runs = sys.argv[1], int(sys.argv[2])

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
