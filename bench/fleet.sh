#!/usr/bin/env bash
# Issue 13's goals for a fleet on etcd, through release binaries: a 3-member etcd cluster on loopback,
# two `sluice run --etcd` members (default 5 s lease) and two `sluice proxy --etcd` replicas, with
# nginx as both model versions and `sluice load` as the client through one replica all along.
#
#   - Failover: kill -9 the leader; time until the standby is the leader (GET /api/v1/fleet polled
#     every 20 ms), against the lease TTL + 1 s. KILLS kills, the killed member restarted as a standby
#     each time; median and maximum.
#   - Propagation: a manifest edit that moves the weights (a canary whose first step is setWeight N),
#     until every live replica reports the new routing revision. This starts at the edit, so it also
#     holds the manifest read and the plan: an upper bound on decision → applied. CHANGES changes;
#     median and p99, against 500 ms.
#   - Failed requests through the fleet during all of it, at RATE req/s (goal: 0).
#   - The single-box default is unchanged: bench/proxy.sh and bench/reconcile.sh measure it, and
#     `sluice run` without --etcd runs none of the fleet's code (no election, follower or counts).
#
#   bench/fleet.sh       # env: KILLS (10), CHANGES (100), RATE (500)
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${KILLS:-10}; CHANGES=${CHANGES:-100}; RATE=${RATE:-500}

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v etcd >/dev/null || need+=(etcd-server)
if ((${#need[@]})); then
    echo "==> installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "==> swift build -c release --product sluice"
swift build -c release --product sluice > /tmp/sluice-bench-build.log 2>&1 || { cat /tmp/sluice-bench-build.log; exit 1; }
SLUICE="$(swift build -c release --show-bin-path)/sluice"

python3 - "$SLUICE" "$KILLS" "$CHANGES" "$RATE" <<'PY'
import datetime, json, os, shutil, signal, statistics, subprocess, sys, tempfile, time, urllib.request
sys.path.insert(0, "bench")
from benchlib import append_results, free_port, wait_port

sluice, kills, changes, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
work = tempfile.mkdtemp(prefix="sluice-fleet-bench-")
os.chmod(work, 0o755)
procs = []
def spawn(args, log):
    p = subprocess.Popen(args, stdout=open(os.path.join(work, log), "a"), stderr=subprocess.STDOUT)
    procs.append(p)
    return p
rows = []
def goal(name, figure, yardstick, met):
    rows.append((name, figure, yardstick, "met" if met else "NOT met"))
    print(f"    {name}: {figure} ({yardstick}) {'met' if met else 'NOT met'}", flush=True)
def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.load(r)

try:
    # etcd: three members on loopback.
    names = ["m0", "m1", "m2"]
    ports = {n: (free_port(), free_port()) for n in names}
    cluster = ",".join(f"{n}=http://127.0.0.1:{ports[n][1]}" for n in names)
    for n in names:
        c, p = ports[n]
        spawn(["etcd", "--name", n, "--data-dir", os.path.join(work, n), "--listen-client-urls", f"http://127.0.0.1:{c}",
               "--advertise-client-urls", f"http://127.0.0.1:{c}", "--listen-peer-urls", f"http://127.0.0.1:{p}",
               "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}", "--initial-cluster", cluster, "--initial-cluster-state", "new",
               "--initial-cluster-token", "sluice-bench", "--logger", "zap", "--log-level", "warn"], f"{n}.log")
    etcd = ",".join(f"http://127.0.0.1:{ports[n][0]}" for n in names)
    for n in names: wait_port(ports[n][0])

    # nginx answers for both versions.
    up = {v: free_port() for v in ("v1", "v2")}
    conf = os.path.join(work, "nginx.conf")
    servers = "".join(f"server {{ listen 127.0.0.1:{up[v]}; location / {{ add_header x-model-version {v}; return 200 '{{\"v\":\"{v}\"}}'; }} }}\n" for v in up)
    open(conf, "w").write(f"daemon off; worker_processes 1; pid {work}/nginx.pid; error_log /dev/null crit;\nevents {{ worker_connections 4096; }}\nhttp {{ access_log off;\n{servers}}}\n")
    spawn(["nginx", "-c", conf, "-p", work], "nginx.log")
    for port in up.values(): wait_port(port)

    manifests = os.path.join(work, "manifests"); os.makedirs(manifests)
    path = os.path.join(manifests, "m.yaml")
    def write(version, weight):
        open(path + ".tmp", "w").write(f"""apiVersion: sluice/v1
kind: ModelDeployment
metadata: {{name: m}}
spec:
  route: {{pathPrefix: /v2/models/m}}
  version: {version}
  versions:
    - {{name: v1, endpoints: ["http://127.0.0.1:{up['v1']}"]}}
    - {{name: v2, endpoints: ["http://127.0.0.1:{up['v2']}"]}}
  strategy:
    canary:
      steps:
        - setWeight: {weight}
        - pause: {{}}
""")
        os.replace(path + ".tmp", path)
    write("v1", 10)

    members = {}
    def start_member(node):
        proxy, admin = free_port(), free_port()
        p = spawn([sluice, "run", "--manifests", manifests, "--etcd", etcd, "--node-id", node, "--listen", f"127.0.0.1:{proxy}",
                   "--admin", f"127.0.0.1:{admin}", "--event-loops", "1"], f"{node}.log")
        wait_port(admin)
        members[node] = {"proc": p, "admin": admin, "proxy": proxy}
    start_member("a")
    start_member("b")
    replicas = {}
    for node in ("p1", "p2"):
        port = free_port()
        spawn([sluice, "proxy", "--etcd", etcd, "--node-id", node, "--listen", f"127.0.0.1:{port}", "--metrics-listen", "127.0.0.1:0",
               "--event-loops", "1"], f"{node}.log")
        wait_port(port)
        replicas[node] = port
    def fleet():
        for node, m in members.items():
            if m["proc"].poll() is None:
                try: return get(m["admin"], "/api/v1/fleet")
                except Exception: pass
        return {}
    def settled(expected):
        view = fleet()
        rev = view.get("routingRevision")
        live = view.get("replicas", [])
        return rev is not None and len(live) == expected and all(r["applied"] == rev for r in live), rev
    deadline = time.time() + 60
    while not settled(4)[0]:
        if time.time() > deadline: raise SystemExit(f"the fleet never settled: {fleet()}")
        time.sleep(0.1)

    duration = 3600
    load = subprocess.Popen([sluice, "load", "--url", f"http://127.0.0.1:{replicas['p1']}/v2/models/m/infer", "--rate", str(rate),
                             "--duration", str(duration), "--connections", "64"], stdout=subprocess.PIPE, stderr=open(os.path.join(work, "load.log"), "w"), text=True)
    procs.append(load)

    print(f"==> propagation: {changes} weight changes, 4 replicas", flush=True)
    times = []
    for i in range(changes):
        _, before = settled(4)
        started = time.time()
        write("v2" if i % 2 == 0 else "v1", 10 + (i % 80))
        while True:
            ok, rev = settled(4)
            if ok and rev != before: break
            if time.time() - started > 30: raise SystemExit(f"change {i} never reached every replica: {fleet()}")
            time.sleep(0.01)
        times.append(time.time() - started)
    times.sort()
    p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
    goal("Propagation, manifest edit to every replica applied (4 replicas)", f"median {statistics.median(times) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms over {changes}",
         "p99 <= 500 ms", p99 <= 0.5)

    print(f"==> failover: {kills} kills of the leader", flush=True)
    failovers = []
    for i in range(kills):
        leader = fleet().get("leader", {}).get("node")
        other = "b" if leader == "a" else "a"
        members[leader]["proc"].send_signal(signal.SIGKILL); members[leader]["proc"].wait()
        killed = time.time()
        while True:
            try:
                if get(members[other]["admin"], "/api/v1/fleet").get("leader", {}).get("node") == other: break
            except Exception:
                pass
            if time.time() - killed > 60: raise SystemExit("no takeover within 60 s")
            time.sleep(0.02)
        failovers.append(time.time() - killed)
        print(f"    kill {i + 1}: {failovers[-1]:.2f} s", flush=True)
        start_member(leader)
        deadline = time.time() + 60
        while not settled(4)[0]:
            if time.time() > deadline: raise SystemExit(f"the fleet never settled after restarting {leader}: {fleet()}")
            time.sleep(0.1)
    goal("Failover, leader killed to its successor leading (lease 5 s)", f"median {statistics.median(failovers):.2f} s, max {max(failovers):.2f} s over {kills}",
         "<= 6 s (TTL + 1 s)", max(failovers) <= 6.0)

    load.send_signal(signal.SIGINT)
    out, _ = load.communicate(timeout=60)
    report = json.loads(out)
    versions = report.get("versions", {})
    answered = sum(v.get("responses", 0) for v in versions.values())
    failed = report.get("failedRequests", 0) + report.get("notSent", 0) + sum(v.get("errors", 0) for v in versions.values())
    goal(f"Failed requests through a replica at {rate} req/s, during all of it", f"{failed} of {answered + failed} over {report.get('seconds', 0):.0f} s",
         "0", failed == 0)
except BaseException:
    # Say why: the end of every process's log, and a copy of every log that outlives the work directory.
    kept = tempfile.mkdtemp(prefix="sluice-fleet-bench-logs-")
    for name in os.listdir(work):
        if name.endswith(".log"): shutil.copy(os.path.join(work, name), kept)
    print(f"==> logs kept in {kept}", flush=True)
    for name in sorted(os.listdir(work)):
        if name.endswith(".log"):
            lines = open(os.path.join(work, name), errors="replace").read().splitlines()
            lines = lines[-15:]
            print(f"--- {name}\n" + "\n".join(lines), flush=True)
    raise
finally:
    for p in procs:
        if p.poll() is None: p.send_signal(signal.SIGTERM)
    for p in procs:
        try: p.wait(timeout=15)
        except subprocess.TimeoutExpired: p.kill(); p.wait()
    shutil.rmtree(work, ignore_errors=True)

width = max(len(r[0]) for r in rows)
table = "\n".join(f"{r[0]:<{width}}  {r[1]}  [{r[2]}: {r[3]}]" for r in rows)
print("\n" + table)
append_results("Fleet on etcd (bench/fleet.sh)",
               "Issue 13's goals: failover, propagation and failed requests, with a real 3-member etcd, two members and two proxy replicas on loopback.",
               f"### {datetime.date.today()}: `KILLS={kills} CHANGES={changes} RATE={rate} bench/fleet.sh` (appended by the script)\n\n```\n{table}\n```")
print("\nappended to bench/RESULTS.md")
PY
