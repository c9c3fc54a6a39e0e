#!/usr/bin/env bash
# Fuzzing (issue 10): libFuzzer on what parses untrusted input, each harness for DURATION seconds
# (default 600): the spec reader (seeded from manifests/, manifests/invalid/ and strategies/), the
# client request parser and the upstream response parser (seeded from Fuzz/seeds/). Prints executions,
# coverage and crashes per harness, and appends them, dated, to bench/RESULTS.md.
#
#   bench/fuzz.sh                        DURATION=600 HARNESSES="spec request response"
#
# A crash or hang is saved under Fuzz/crashes/HARNESS/; commit it: the tests replay every file there
# (and every seed) through a normal build of the harness, so it stays fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-600}
HARNESSES=${HARNESSES:-spec request response}
# libFuzzer's driver without its main (SwiftPM's executable has one): the harness calls
# LLVMFuzzerRunDriver. AddressSanitizer with libFuzzer's coverage instrumentation, as -fsanitize=fuzzer
# gives C code. (swiftc's -sanitize=fuzzer links libFuzzer's main too, and the link fails.)
LIBFUZZER=$(ls "$(dirname "$(readlink -f "$(command -v swiftc)")")"/../lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a | head -1)
FLAGS=(--scratch-path .build/fuzz -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp
       -Xswiftc -DFUZZING -Xlinker "$LIBFUZZER" -Xlinker -lstdc++)
echo "==> swift build --product sluice-fuzz, instrumented (in .build/fuzz)"
swift build "${FLAGS[@]}" --product sluice-fuzz > /tmp/sluice-fuzz-build.log 2>&1 || { grep -v "Cannot export local symbol" /tmp/sluice-fuzz-build.log | tail -30; exit 1; }
FUZZ="$(swift build "${FLAGS[@]}" --show-bin-path)/sluice-fuzz"

python3 - "$FUZZ" "$DURATION" "$HARNESSES" <<'PY'
import datetime, glob, os, re, shutil, subprocess, sys
sys.path.insert(0, "bench")
from benchlib import append_results

fuzz, duration, harnesses = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
seeds = {
    "spec": glob.glob("manifests/*.yaml") + glob.glob("manifests/invalid/*.yaml") + glob.glob("strategies/*.yaml"),
    "request": glob.glob("Fuzz/seeds/request/*"),
    "response": glob.glob("Fuzz/seeds/response/*"),
}
# The harnesses run side by side, each for the whole duration (on two cores, three share them: the
# executions column says how much each got).
rows, running = [], []
for name in harnesses:
    corpus = f".build/fuzz-corpus/{name}"
    os.makedirs(corpus, exist_ok=True)
    for seed in seeds[name]:
        shutil.copy(seed, os.path.join(corpus, os.path.basename(seed)))
    crashes = f"Fuzz/crashes/{name}"
    os.makedirs(crashes, exist_ok=True)
    before = set(os.listdir(crashes))
    print(f"==> {name}: {duration} s from {len(os.listdir(corpus))} inputs", flush=True)
    log = f"/tmp/sluice-fuzz-{name}.log"
    out = open(log, "w")
    process = subprocess.Popen([fuzz, f"-max_total_time={duration}", "-timeout=10", "-rss_limit_mb=2048", "-max_len=65536",
                                f"-artifact_prefix={crashes}/", "-print_final_stats=1", corpus],
                               env=dict(os.environ, SLUICE_FUZZ=name, ASAN_OPTIONS="detect_leaks=0"), stdout=out, stderr=subprocess.STDOUT)
    running.append((name, process, log, crashes, before))
for name, process, log, crashes, before in running:
    status = process.wait()
    text = open(log).read()
    runs = re.findall(r"Done (\d+) runs in (\d+) second", text)
    execs = int(runs[-1][0]) if runs else int((re.findall(r"stat::number_of_executed_units:\s*(\d+)", text) or ["0"])[-1])
    seconds = int(runs[-1][1]) if runs else duration
    coverage = (re.findall(r"cov: (\d+)", text) or ["0"])[-1]
    features = (re.findall(r"ft: (\d+)", text) or ["0"])[-1]
    new = sorted(set(os.listdir(crashes)) - before)
    rows.append((name, seconds, execs, coverage, features, len(new), status))
    print(f"  {name}: {execs} executions in {seconds} s, coverage {coverage} edges ({features} features), {len(new)} new crash(es); exit {status}", flush=True)
    for crash in new:
        print(f"    {crashes}/{crash}")

table = [f"### {datetime.date.today().isoformat()}: `DURATION={duration} bench/fuzz.sh`\n",
         "| harness | seconds | executions | exec/s | coverage (edges) | features | new crashes |", "|---|---|---|---|---|---|---|"]
table += [f"| {r[0]} | {r[1]} | {r[2]} | {r[2] // max(1, r[1])} | {r[3]} | {r[4]} | **{r[5]}** |" for r in rows]
text = "\n".join(table) + "\n"
print(text)
append_results("Fuzzing (`bench/fuzz.sh`)", "Goal (issue 10): each harness for at least 10 minutes with no open crash.", text)
sys.exit(1 if any(r[5] for r in rows) else 0)
PY
