#!/usr/bin/env bash
# Memory and file descriptors of a long-running `sluice run` under analysis (issue 15).
#
# Ten deployments, each a canary with background analysis every second (success rate, the sequential
# error-rate test and a p99 against stable), RATE req/s in all, and each deployment's spec.version
# flipped between v1 and v2 every FLIP seconds (staggered, so a flip lands every FLIP/10 seconds): every
# flip cancels or starts a rollout and its analyses. Side by side, the baseline: the same deployments,
# load and flips in a second `sluice run` with no analysis. RSS and open descriptors of both are
# sampled every SAMPLE seconds.
#
# Goal: after the first minute, RSS grows by at most 5 MB over the rest of the run, and descriptors
# stay flat.
#
#   bench/soak.sh                          # 10 minutes
#   DURATION=120 bench/soak.sh             # a quick look
#
# Prints the samples and a summary, and appends the summary, dated, to bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-600}
RATE=${RATE:-450}
FLIP=${FLIP:-15}
SAMPLE=${SAMPLE:-10}
echo "==> swift build -c release --product sluice"
swift build -c release --product sluice > /tmp/sluice-bench-build.log 2>&1 || { cat /tmp/sluice-bench-build.log; exit 1; }
SLUICE="$(swift build -c release --show-bin-path)/sluice"

python3 - "$SLUICE" "$DURATION" "$RATE" "$FLIP" "$SAMPLE" <<'PY'
import datetime, os, signal, socket, statistics, subprocess, sys, tempfile, time
sluice, duration, rate, flip, sample = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
DEPLOYMENTS = 10

sys.path.insert(0, "bench")
from benchlib import free_port, wait_port

ANALYSIS = """      analysis:
        interval: 1s
        metrics:
          - {name: success-rate, builtin: successRate, successCondition: ">= 0.95"}
          - {name: errors, builtin: errorRate, compareTo: stable}
          - {name: p99, builtin: latencyP99, compareTo: stable, maxRatio: 1.25}
"""

def manifest(index, version, p1, p2, analysis):
    return f"""apiVersion: sluice/v1
kind: ModelDeployment
metadata: {{name: m{index}}}
spec:
  route: {{pathPrefix: /v2/models/m{index}}}
  version: {version}
  versions:
    - {{name: v1, endpoints: ["http://127.0.0.1:{p1}"]}}
    - {{name: v2, endpoints: ["http://127.0.0.1:{p2}"]}}
  strategy:
    canary:
      steps: [{{setWeight: 20}}, {{pause: {{duration: 5s}}}}, {{setWeight: 50}}, {{pause: {{duration: 5s}}}}]
{analysis if analysis else ""}"""

def write(path, text):
    tmp = path + ".next"; open(tmp, "w").write(text); os.replace(tmp, path)

def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"): return int(line.split()[1]) / 1024
    return 0.0

def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))

procs = []
try:
    work = tempfile.mkdtemp(prefix="sluice-soak-")
    ports = [(free_port(), free_port()) for _ in range(DEPLOYMENTS)]
    for p1, p2 in ports:
        procs.append(subprocess.Popen([sluice, "model-server", "--name", "m", "--model-version", "v1", "--port", str(p1)], stdout=subprocess.DEVNULL))
        procs.append(subprocess.Popen([sluice, "model-server", "--name", "m", "--model-version", "v2", "--port", str(p2)], stdout=subprocess.DEVNULL))
    for p1, p2 in ports: wait_port(p1); wait_port(p2)
    instances = {}
    for label, analysis in [("analysis", ANALYSIS), ("baseline (no analysis)", None)]:
        directory = os.path.join(work, label.split()[0], "m"); os.makedirs(directory)
        for index, (p1, p2) in enumerate(ports):
            write(os.path.join(directory, f"m{index}.yaml"), manifest(index, "v1", p1, p2, analysis))
        proxy, admin = free_port(), free_port()
        log = open(os.path.join(work, label.split()[0], "run.log"), "w")
        process = subprocess.Popen([sluice, "run", "--manifests", directory, "--state", os.path.join(work, label.split()[0], "state"),
                                    "--listen", f"127.0.0.1:{proxy}", "--admin", f"127.0.0.1:{admin}"], stdout=log, stderr=log)
        procs.append(process)
        wait_port(proxy); wait_port(admin)
        instances[label] = {"process": process, "dir": directory, "analysis": analysis, "samples": [], "proxy": proxy}
    for instance in instances.values():
        for index in range(DEPLOYMENTS):
            url = f"http://127.0.0.1:{instance['proxy']}/v2/models/m{index}/infer"
            procs.append(subprocess.Popen([sluice, "load", "--url", url, "--rate", str(max(1, rate // DEPLOYMENTS)), "--duration", str(duration + 5)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    start = time.time()
    versions = ["v1"] * DEPLOYMENTS
    next_flip, next_sample, flips = start + flip / DEPLOYMENTS, start, 0
    print(f"==> {duration} s: {DEPLOYMENTS} deployments, {rate} req/s in all, a flip every {flip / DEPLOYMENTS:.1f} s; sampling every {sample} s")
    print(f"{'t (s)':>6}  " + "  ".join(f"{label[:8]:>8} RSS  fds" for label in instances))
    while time.time() - start < duration:
        now = time.time()
        if now >= next_flip:
            index = flips % DEPLOYMENTS
            versions[index] = "v2" if versions[index] == "v1" else "v1"
            for instance in instances.values():
                p1, p2 = ports[index]
                write(os.path.join(instance["dir"], f"m{index}.yaml"), manifest(index, versions[index], p1, p2, instance["analysis"]))
            flips += 1
            next_flip += flip / DEPLOYMENTS
        if now >= next_sample:
            row = []
            for instance in instances.values():
                pid = instance["process"].pid
                if instance["process"].poll() is not None: raise SystemExit(f"sluice run exited; see {work}")
                instance["samples"].append((now - start, rss_mb(pid), fds(pid)))
                row.append(f"{instance['samples'][-1][1]:8.1f} MB {instance['samples'][-1][2]:4d}")
            print(f"{now - start:6.0f}  " + "  ".join(row), flush=True)
            next_sample += sample
        time.sleep(0.05)
    summary = []
    for label, instance in instances.items():
        samples = instance["samples"]
        after_minute = [s for s in samples if s[0] >= 60] or samples
        first, last = after_minute[0], samples[-1]
        fd_values = [s[2] for s in after_minute]
        summary.append((label, first[1], last[1], last[1] - first[1], max(s[1] for s in samples), min(fd_values), max(fd_values)))
    lines = [f"### {datetime.date.today().isoformat()}: `DURATION={duration} RATE={rate} FLIP={flip} bench/soak.sh` ({flips} flips)\n",
             "| sluice run | RSS at 1 min | RSS at the end | growth after the first minute | peak RSS | descriptors after 1 min (min–max) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {s[0]} | {s[1]:.1f} MB | {s[2]:.1f} MB | **{s[3]:+.1f} MB** | {s[4]:.1f} MB | {s[5]}–{s[6]} |" for s in summary]
    growth = summary[0][3]
    lines.append(f"\nGoal: growth ≤ 5 MB after the first minute with analysis: {'met' if growth <= 5 else 'NOT met'} ({growth:+.1f} MB).")
    text = "\n".join(lines) + "\n"
    print(text)
    from benchlib import append_results
    append_results("Memory under analysis (`bench/soak.sh`)",
                   "Goal (issue 15): RSS after the first minute grows by at most 5 MB over the rest of a 10-minute soak; descriptors flat.", text)
    sys.exit(0 if growth <= 5 else 1)
finally:
    for p in procs:
        if p.poll() is None: p.send_signal(signal.SIGTERM)
    for p in procs:
        try: p.wait(timeout=10)
        except subprocess.TimeoutExpired: p.kill(); p.wait()
PY
