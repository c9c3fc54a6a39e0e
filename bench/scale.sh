#!/usr/bin/env bash
# Scale (issue 10): what `sluice run` costs with 1 and with COUNT (default 1,000) deployments, side by
# side. One manifest file per deployment, as a GitOps repository has them, all routed to two shared
# model servers.
#
#   idle CPU      % of one core over IDLE seconds (default 30) with nothing changing. Goal <= 1% at 1,000.
#   RSS           resident memory after adoption and the idle period. Goal <= 64 MB at 1,000.
#   change->live  from writing one manifest (spec.version flipped; the canary's first step is 100%) to
#                 the proxy answering from the new version, CHANGES times (default 20). Goal p99 <= 250 ms.
#   100 at once   100 deployments flipped together through a 4 s canary (setWeight 20, pause 2 s,
#                 setWeight 60, pause 2 s): time until all are Healthy on the new version. Goal <= 1.5x 4 s.
#
#   bench/scale.sh                   COUNT=1000 IDLE=30 CHANGES=20
#
# Prints a table and appends it, dated, to bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-1000}
IDLE=${IDLE:-30}
CHANGES=${CHANGES:-20}
echo "==> swift build -c release --product sluice"
swift build -c release --product sluice > /tmp/sluice-bench-build.log 2>&1 || { cat /tmp/sluice-bench-build.log; exit 1; }
SLUICE="$(swift build -c release --show-bin-path)/sluice"

python3 - "$SLUICE" "$COUNT" "$IDLE" "$CHANGES" <<'PY'
import datetime, http.client, json, os, signal, statistics, subprocess, sys, tempfile, time, urllib.request
sys.path.insert(0, "bench")
from benchlib import append_results, free_port, wait_port

sluice, count, idle, changes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
TICKS = os.sysconf("SC_CLK_TCK")
STEPS = "[{setWeight: 20}, {pause: {duration: 2s}}, {setWeight: 60}, {pause: {duration: 2s}}]"
STEP_TIME = 4.0

def manifest(name, version, ports, steps):
    return f"""apiVersion: sluice/v1
kind: ModelDeployment
metadata: {{name: {name}}}
spec:
  route: {{pathPrefix: /{name}}}
  version: {version}
  versions:
    - {{name: v1, endpoints: ["http://127.0.0.1:{ports[0]}"]}}
    - {{name: v2, endpoints: ["http://127.0.0.1:{ports[1]}"]}}
  strategy:
    canary: {{steps: {steps}}}
"""

def write(directory, name, text):
    tmp = os.path.join(directory, f".{name}.tmp")
    open(tmp, "w").write(text)
    os.replace(tmp, os.path.join(directory, f"{name}.yaml"))

def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS

def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

def deployments(admin):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/api/v1/deployments", timeout=30) as r:
        return json.load(r)

def served_by(proxy, path):
    connection = http.client.HTTPConnection("127.0.0.1", proxy, timeout=5)
    connection.request("POST", path, body=b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP64","data":[1]}]}',
                       headers={"content-type": "application/json"})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.getheader("x-sluice-version")

def measure(n, models):
    work = tempfile.mkdtemp(prefix="sluice-scale-")
    manifests = os.path.join(work, "m"); os.mkdir(manifests)
    names = [f"d{i:04d}" for i in range(n)]
    for name in names:
        write(manifests, name, manifest(name, "v1", models, STEPS))
    proxy, admin = free_port(), free_port()
    log = open(os.path.join(work, "run.log"), "w")
    started = time.time()
    run = subprocess.Popen([sluice, "run", "--manifests", manifests, "--state", os.path.join(work, "state"),
                            "--listen", f"127.0.0.1:{proxy}", "--admin", f"127.0.0.1:{admin}"], stdout=log, stderr=log)
    try:
        wait_port(admin, timeout=120)
        while True:
            views = deployments(admin)
            if len(views) == n and all(v["phase"] == "Healthy" for v in views): break
            if time.time() - started > 300: raise SystemExit(f"{n} deployments never all Healthy; see {work}/run.log")
            time.sleep(0.2)
        adopted = time.time() - started
        print(f"  {n}: adopted in {adopted:.1f} s; idle for {idle} s", flush=True)
        time.sleep(2)
        before = cpu_seconds(run.pid)
        time.sleep(idle)
        idle_cpu = 100 * (cpu_seconds(run.pid) - before) / idle
        rss = rss_mb(run.pid)

        # One manifest changed at a time: write it, then probe the proxy every 2 ms until v2 (or v1) answers.
        latencies = []
        target = names[n // 2]
        version = "v1"
        for _ in range(changes):
            version = "v2" if version == "v1" else "v1"
            steps = "[{setWeight: 100}, {pause: {}}]"
            t0 = time.time()
            write(manifests, target, manifest(target, version, models, steps))
            while served_by(proxy, f"/{target}/infer") != version:
                if time.time() - t0 > 10: raise SystemExit(f"change to {version} never went live")
                time.sleep(0.002)
            latencies.append((time.time() - t0) * 1000)
            time.sleep(0.2)
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(round(0.99 * (len(latencies) - 1))))]

        # Up to 100 rollouts at once through the 4 s canary.
        flipped = [name for name in names if name != target][:100]
        t0 = time.time()
        for name in flipped:
            write(manifests, name, manifest(name, "v2", models, STEPS))
        wanted = set(flipped)
        while True:
            views = {v["name"]: v for v in deployments(admin)}
            done = [name for name in wanted if views[name]["phase"] == "Healthy" and views[name]["stableVersion"] == "v2"]
            if len(done) == len(wanted): break
            if time.time() - t0 > 120: raise SystemExit(f"{len(done)}/{len(wanted)} rollouts done after 120 s")
            time.sleep(0.05)
        together = time.time() - t0
        return {"n": n, "adopted": adopted, "idle_cpu": idle_cpu, "rss": rss, "p50": p50, "p99": p99,
                "rollouts": len(flipped), "together": together}
    finally:
        run.send_signal(signal.SIGTERM)
        try: run.wait(timeout=30)
        except subprocess.TimeoutExpired: run.kill()

model_ports = [free_port(), free_port()]
models = [subprocess.Popen([sluice, "model-server", "--name", "m", "--model-version", v, "--port", str(p)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
          for v, p in zip(["v1", "v2"], model_ports)]
try:
    for p in model_ports: wait_port(p)
    print(f"==> sluice run with 1 and {count} deployments (one file each)")
    rows = [measure(1, model_ports), measure(count, model_ports)]
finally:
    for m in models: m.terminate()

def ok(value, goal): return "met" if value <= goal else "**not met**"
big = rows[1]
table = [f"### {datetime.date.today().isoformat()}: `COUNT={count} IDLE={idle} CHANGES={changes} bench/scale.sh`\n",
         "| deployments | adopted in | idle CPU (% of a core) | RSS | change → live p50 | p99 | rollouts at once | all done in | ÷ 4 s of steps |",
         "|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    together = f"{r['together']:.1f} s | {r['together'] / STEP_TIME:.2f}×" if r["rollouts"] else "- | -"
    table.append(f"| {r['n']} | {r['adopted']:.1f} s | {r['idle_cpu']:.2f} % | {r['rss']:.1f} MB | {r['p50']:.0f} ms | {r['p99']:.0f} ms | {r['rollouts']} | {together} |")
table += ["", f"Goals at {count}: idle CPU ≤ 1% ({ok(big['idle_cpu'], 1)}), RSS ≤ 64 MB ({ok(big['rss'], 64)}), "
          f"change → live p99 ≤ 250 ms ({ok(big['p99'], 250)}), 100 rollouts within 1.5× their 4 s ({ok(big['together'] / STEP_TIME, 1.5)})."]
text = "\n".join(table) + "\n"
print(text)
append_results("Scale (`bench/scale.sh`)", "Goals (issue 10), at 1,000 deployments: idle CPU ≤ 1% of a core, RSS ≤ 64 MB, manifest change to new weights live p99 ≤ 250 ms, 100 rollouts at once within 1.5× the time their steps take.", text)
PY
