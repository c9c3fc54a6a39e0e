#!/usr/bin/env bash
# HTTP/2 benchmark (issue 14): h2load -> [sluice proxy] -> nghttpd over h2c, Sluice against the same
# server without a proxy, in one run, then 1,000 weight swaps under HTTP/2 load.
#
# The upstream is nghttpd (Debian nghttp2-server), a C HTTP/2 server answering a small file; the load
# is h2load (nghttp2-client) with CONNS connections of STREAMS concurrent streams each. Sluice routes
# `protocol: h2c` versions weighted 90/10 on one event loop, pinned to CPU 0; nghttpd and h2load share
# CPU 1. Unary HTTP/2 requests are what a gRPC unary call is on the wire (HEADERS, DATA, and for gRPC
# trailers). gRPC unary calls proper (issue 14's goal) run against `sluice model-server --grpc-port`
# (grpc-swift 2, on CPU 1) directly and through a second Sluice: h2load posts one gRPC-framed
# ModelInferRequest per call, as tritonclient.grpc would.
#
#   bench/http2.sh        # env: ROUNDS (default 5), REQUESTS (default 50000 per run), CONNS (8), STREAMS (10), SWAPS (1000)
#
# The floor is bench/H2RelayFloor: a relay built on the same swift-nio-http2 stream channels as Sluice
# (one per stream on each side, one flush per event-loop tick per connection) that routes, rewrites and
# counts nothing, on CPU 0 like Sluice, sending every tenth stream to the second nghttpd as the 90/10
# route does. Sluice against it is Sluice's own cost per stream; the floor against direct is what the
# stream-channel design allows at all. The same relay run on frames (`h2-relay-floor --frames`: each
# connection's NIOHTTP2Handler hands its frames to one handler that renumbers them onto the upstream's
# streams, with no stream channels) shows what the channels cost, and, against direct, what
# swift-nio-http2's codec and stream state machine (HPACK, header validation, flow control) allow at all.
#
# Targets take turns for ROUNDS rounds; it prints every round, the medians, and the median of the
# per-round ratios, and appends them, dated, to bench/RESULTS.md. Builds Sluice and the floor first
# with scripts/build-release (the production build); installs nghttp2-client and nghttp2-server when
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}; REQUESTS=${REQUESTS:-50000}; CONNS=${CONNS:-8}; STREAMS=${STREAMS:-10}; SWAPS=${SWAPS:-1000}

if ! command -v h2load >/dev/null || ! command -v nghttpd >/dev/null; then
    echo "==> installing nghttp2-client nghttp2-server"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nghttp2-client nghttp2-server >/dev/null
fi
BIN=$(bench/build-production.sh sluice h2-relay-floor)
SLUICE="$BIN/sluice"
FLOOR="$BIN/h2-relay-floor"

D=$(mktemp -d)
cleanup() {
    for p in "$D"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
    sleep 0.3; rm -rf "$D"
}
trap cleanup EXIT

mkdir -p "$D/www"
printf '{"model_name":"m","outputs":[{"name":"p","datatype":"FP32","shape":[1],"data":[0.42]}]}' > "$D/www/infer"
routes() { # REVISION CANARY_WEIGHT
    printf '{"revision": %s, "routes": [{"name": "m", "pathPrefix": "/", "backends": [
      {"version": "v2", "weight": %s, "protocol": "h2c", "endpoints": ["http://127.0.0.1:18182"]},
      {"version": "v1", "weight": %s, "protocol": "h2c", "endpoints": ["http://127.0.0.1:18181"]}]}]}\n' "$1" "$2" "$((100 - $2))"
}
routes 1 10 > "$D/routes.json"
printf '{"revision": 1, "routes": [{"name": "g", "pathPrefix": "/inference.GRPCInferenceService/", "backends": [
  {"version": "v1", "weight": 100, "protocol": "h2c", "endpoints": ["http://127.0.0.1:18183"]}]}]}\n' > "$D/routes-grpc.json"
# One ModelInferRequest for model m (three FP64 features as typed contents), framed for gRPC: a zero
# byte (not compressed), the length (4 bytes, big-endian), the message.
python3 - "$D/infer.grpc" <<'PY'
import struct, sys
def field(number, payload): return bytes([number << 3 | 2, len(payload)]) + payload
contents = field(7, struct.pack("<3d", 0.5, -1.0, 2.0))            # fp64_contents, packed
tensor = field(1, b"features") + field(2, b"FP64") + field(3, b"\x03") + field(5, contents)
message = field(1, b"m") + field(5, tensor)                         # model_name, inputs
open(sys.argv[1], "wb").write(b"\x00" + struct.pack(">I", len(message)) + message)
PY
for port in 18181 18182 18183 18184 18190 18191 18192 18193; do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        echo "error: port $port is already in use; stop what listens there and run again" >&2
        exit 1
    fi
done
listening() { # PORT LOG...: waits up to 10 s for PORT to accept; fails loudly with the logs if it does not
    local port=$1; shift
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return 0; sleep 0.1; done
    echo "error: nothing listens on port $port after 10 s" >&2
    for log in "$@"; do [ -f "$log" ] && tail -5 "$log" >&2; done
    exit 1
}
taskset -c 1 nghttpd --no-tls -d "$D/www" 18181 > "$D/up1.log" 2>&1 & echo $! > "$D/up1.pid"
taskset -c 1 nghttpd --no-tls -d "$D/www" 18182 > "$D/up2.log" 2>&1 & echo $! > "$D/up2.pid"
# The floor connects to both upstreams as it starts (and exits if it cannot): they listen first.
listening 18181 "$D/up1.log"; listening 18182 "$D/up2.log"
taskset -c 0 "$SLUICE" proxy --routes "$D/routes.json" --listen 127.0.0.1:18190 --event-loops 1 > "$D/sluice.log" 2>&1 & echo $! > "$D/sluice.pid"
taskset -c 0 "$FLOOR" 18192 18181 18182 > "$D/floor.log" 2>&1 & echo $! > "$D/floor.pid"
taskset -c 0 "$FLOOR" --frames 18193 18181 18182 > "$D/frames.log" 2>&1 & echo $! > "$D/frames.pid"
taskset -c 1 "$SLUICE" model-server --name m --model-version v1 --port 18184 --grpc-port 18183 > "$D/model.log" 2>&1 & echo $! > "$D/model.pid"
taskset -c 0 "$SLUICE" proxy --routes "$D/routes-grpc.json" --listen 127.0.0.1:18191 --event-loops 1 > "$D/sluice-grpc.log" 2>&1 & echo $! > "$D/sluice-grpc.pid"
listening 18190 "$D/sluice.log"; listening 18192 "$D/floor.log"; listening 18193 "$D/frames.log"; listening 18183 "$D/model.log"
listening 18184 "$D/model.log"; listening 18191 "$D/sluice-grpc.log"

declare -A RPS P99 FAIL
run() { # NAME PORT [REQUESTS]: one h2load run; appends req/s, the p99 and failures (NAME grpc-*: gRPC ModelInfer calls)
    local out rps p99 fail
    local -a call=("http://127.0.0.1:$2/infer")
    [[ $1 == grpc-* ]] && call=(-d "$D/infer.grpc" -H "content-type: application/grpc" -H "te: trailers"
                                "http://127.0.0.1:$2/inference.GRPCInferenceService/ModelInfer")
    rm -f "$D/requests.log" # h2load appends to its log: each run's p99 is of its own requests only
    out=$(taskset -c 1 h2load -n "${3:-$REQUESTS}" -c "$CONNS" -m "$STREAMS" -t 1 --log-file="$D/requests.log" "${call[@]}" 2>&1) || true
    rps=$(echo "$out" | awk '/^finished in/{print $4}')
    # The p99 from h2load's per-request log: start, status, microseconds to the end of the response.
    p99=$(awk -F'\t' '{ print $3 }' "$D/requests.log" | sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%.3f", v[int(NR * 0.99 + 0.999)] / 1000; else print 0 }')
    # Failed (which counts non-2xx answers), errored and timed out.
    fail=$(echo "$out" | awk '/^requests:/{print $10 + $12 + $14}')
    fail=${fail:-0}
    [ -n "$rps" ] || fail=${3:-$REQUESTS} # h2load did not finish: count every request as failed
    RPS[$1]+="${rps:-0} "; P99[$1]+="$p99 "; FAIL[$1]=$(( ${FAIL[$1]:-0} + fail ))
    printf '  %-8s req/s=%-10s p99=%-9sms failed=%s\n' "$1" "${rps:-FAILED}" "$p99" "$fail"
}
median() { echo "$@" | tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
pairs() { # A B: the per-round req/s ratios A[i]/B[i]
    local -a a=(${RPS[$1]}) b=(${RPS[$2]})
    for i in "${!a[@]}"; do awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN { if (y > 0) print x / y }'; done
}

TARGETS=("direct 18181" "sluice 18190" "floor 18192" "frames 18193" "grpc-direct 18183" "grpc-sluice 18191")
echo "==> $ROUNDS rounds of $REQUESTS requests per target, $CONNS connections x $STREAMS streams, h2load and nghttpd on CPU 1, sluice on CPU 0"
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    for target in "${TARGETS[@]}"; do run $target; done
done

echo "==> sluice again, swapping the routing table $SWAPS times under HTTP/2 load"
pid=$(cat "$D/sluice.pid")
( for i in $(seq 2 $((SWAPS + 1))); do routes "$i" $((i % 101)) > "$D/routes.next"; mv "$D/routes.next" "$D/routes.json"; kill -HUP "$pid"; sleep 0.005; done ) &
swapper=$!
swaps_run() { while kill -0 "$swapper" 2>/dev/null; do run swaps 18190; done; }
swaps_run
wait $swapper
reloads=$(grep -c "routing table reloaded" "$D/sluice.log" || true)
rss_kb=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")

summary() {
    printf 'HTTP/2 req/s, sluice/direct (one core)   medians %s / %s, median of per-round ratios %.3f  (goal >= 0.5)\n' \
        "$(median ${RPS[sluice]})" "$(median ${RPS[direct]})" "$(median $(pairs sluice direct))"
    printf 'HTTP/2 req/s, sluice/floor                medians %s / %s, median of per-round ratios %.3f  (the stream-channel relay: Sluice'"'"'s own cost)\n' \
        "$(median ${RPS[sluice]})" "$(median ${RPS[floor]})" "$(median $(pairs sluice floor))"
    printf 'HTTP/2 req/s, floor/direct                median of per-round ratios %.3f  (what stream channels allow at all)\n' "$(median $(pairs floor direct))"
    printf 'HTTP/2 req/s, frames/direct               medians %s / %s, median of per-round ratios %.3f  (the relay on frames: what swift-nio-http2 allows at all)\n' \
        "$(median ${RPS[frames]})" "$(median ${RPS[direct]})" "$(median $(pairs frames direct))"
    printf 'HTTP/2 req/s, floor/frames                median of per-round ratios %.3f  (stream channels against none)\n' "$(median $(pairs floor frames))"
    printf 'p99 latency, median over rounds           sluice %s ms, floor %s ms, frames %s ms, direct %s ms\n' \
        "$(median ${P99[sluice]})" "$(median ${P99[floor]})" "$(median ${P99[frames]})" "$(median ${P99[direct]})"
    echo "Failed requests                           sluice ${FAIL[sluice]}, floor ${FAIL[floor]}, frames ${FAIL[frames]}, direct ${FAIL[direct]}"
    printf 'gRPC unary req/s, sluice/direct           medians %s / %s, median of per-round ratios %.3f  (goal >= 0.5; direct: sluice model-server --grpc-port)\n' \
        "$(median ${RPS[grpc-sluice]})" "$(median ${RPS[grpc-direct]})" "$(median $(pairs grpc-sluice grpc-direct))"
    printf 'gRPC p99 latency, median over rounds      sluice %s ms, direct %s ms; failed calls: sluice %s, direct %s\n' \
        "$(median ${P99[grpc-sluice]})" "$(median ${P99[grpc-direct]})" "${FAIL[grpc-sluice]}" "${FAIL[grpc-direct]}"
    echo "Weight swaps under HTTP/2 load            $reloads of $SWAPS applied, failed requests during them: ${FAIL[swaps]}  (goal 0)"
    echo "Sluice peak RSS                           $((rss_kb / 1024)) MB"
}
echo
summary | tee "$D/summary.txt"
{
    echo "### $(date -u +%Y-%m-%d): \`ROUNDS=$ROUNDS REQUESTS=$REQUESTS CONNS=$CONNS STREAMS=$STREAMS bench/http2.sh\` at $(git rev-parse --short HEAD), Sluice and the floor from scripts/build-release ($(bench/build-production.sh --profile)) (appended by the script)"
    echo
    echo '```'
    cat "$D/summary.txt"
    echo '```'
} > "$D/results.md"
python3 -c "import sys; sys.path.insert(0, 'bench'); from benchlib import append_results; append_results('HTTP/2 (\`bench/http2.sh\`)', \"Issue 14's goals for HTTP/2: gRPC-shaped unary streams through Sluice at >= 0.5x direct on one core, p99 reported, and 1,000 weight swaps under HTTP/2 load with no failed request. h2load and nghttpd (nghttp2) over h2c.\", open('$D/results.md').read())"
echo "==> appended to bench/RESULTS.md"
