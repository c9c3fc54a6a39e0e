#!/usr/bin/env bash
# Proxy benchmark: wrk -> [proxy] -> two upstreams weighted 90/10, Sluice side by side with nginx,
# HAProxy, no proxy at all, and a raw SwiftNIO TCP relay that parses nothing (the floor of any NIO
# proxy design on the machine), in one run.
#
# Each proxy is pinned to CPU 0 with one worker (Sluice: one event loop; nginx: one worker; HAProxy:
# one thread). The upstream nginx and wrk share CPU 1. Then it runs Sluice again while the routing
# table is swapped 1,000 times, and reports errors and Sluice's peak RSS.
#
#   bench/proxy.sh            # env: DUR (default 10s), CONNS (default 64), SWAPS (default 1000)
#
# Builds Sluice in release mode first. Installs nginx-light, haproxy and wrk when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10s}; CONNS=${CONNS:-64}; SWAPS=${SWAPS:-1000}

need=()
for t in nginx haproxy wrk; do command -v $t >/dev/null || need+=("$t"); done
if ((${#need[@]})); then
    echo "==> installing nginx-light haproxy wrk"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light haproxy wrk >/dev/null
fi
echo "==> swift build -c release --product sluice"
swift build -c release --product sluice > /tmp/sluice-bench-build.log 2>&1 || { cat /tmp/sluice-bench-build.log; exit 1; }
swift build -c release --product relay-floor >> /tmp/sluice-bench-build.log 2>&1 || { cat /tmp/sluice-bench-build.log; exit 1; }
SLUICE="$(swift build -c release --show-bin-path)/sluice"
RELAY="$(swift build -c release --show-bin-path)/relay-floor"

D=$(mktemp -d)
cleanup() {
    for p in "$D"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
    sleep 0.3; rm -rf "$D"
}
trap cleanup EXIT

body='{"model_name":"m","outputs":[{"name":"p","datatype":"FP32","shape":[1],"data":[0.42]}]}'
cat > "$D/up.conf" <<C
daemon off; worker_processes 1; pid $D/up.pidfile; error_log /dev/null crit;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:18081; location / { default_type application/json; return 200 '$body'; } }
  server { listen 127.0.0.1:18082; location / { default_type application/json; return 200 '$body'; } } }
C
cat > "$D/px.conf" <<C
daemon off; worker_processes 1; pid $D/px.pidfile; error_log /dev/null crit;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream models { server 127.0.0.1:18081 weight=9; server 127.0.0.1:18082 weight=1; keepalive 128; }
  server { listen 127.0.0.1:18090; location / { proxy_pass http://models; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
C
cat > "$D/ha.cfg" <<C
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:18091
  default_backend models
backend models
  balance roundrobin
  server stable 127.0.0.1:18081 weight 90
  server canary 127.0.0.1:18082 weight 10
C
routes() { # REVISION CANARY_WEIGHT
    printf '{"revision": %s, "routes": [{"name": "m", "pathPrefix": "/", "backends": [
      {"version": "v2", "weight": %s, "endpoints": ["http://127.0.0.1:18082"]},
      {"version": "v1", "weight": %s, "endpoints": ["http://127.0.0.1:18081"]}]}]}\n' "$1" "$2" "$((100 - $2))"
}
routes 1 10 > "$D/routes.json"

for port in 18081 18082 18090 18091 18092 18093; do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        echo "error: port $port is already in use; stop what listens there and run again" >&2
        exit 1
    fi
done

taskset -c 1 nginx -c "$D/up.conf" -p "$D" & echo $! > "$D/up.pid"
taskset -c 0 nginx -c "$D/px.conf" -p "$D" & echo $! > "$D/px.pid"
taskset -c 0 haproxy -db -q -f "$D/ha.cfg" & echo $! > "$D/ha.pid"
taskset -c 0 "$SLUICE" proxy --routes "$D/routes.json" --listen 127.0.0.1:18092 --event-loops 1 > "$D/sluice.log" 2>&1 & echo $! > "$D/sluice.pid"
# The floor of any SwiftNIO proxy: a raw TCP relay on one event loop that parses nothing (bench/RelayFloor).
taskset -c 0 "$RELAY" 18093 18081 > /dev/null 2>&1 & echo $! > "$D/relay.pid"
for port in 18081 18082 18090 18091 18092 18093; do
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

declare -A RPS P50 P99 ERR
ms() { # wrk latency (850.00us, 1.23ms, 1.01s) to milliseconds
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}
run() { # NAME PORT
    local out
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DUR" --latency "http://127.0.0.1:$2/v2/models/m/infer" 2>&1) || true
    RPS[$1]=$(echo "$out" | awk '/Requests\/sec/{print $2}')
    P50[$1]=$(ms "$(echo "$out" | awk '$1=="50%"{print $2}')")
    P99[$1]=$(ms "$(echo "$out" | awk '$1=="99%"{print $2}')")
    ERR[$1]=$(echo "$out" | awk '/Non-2xx/{n+=$NF} /Socket errors/{gsub(",",""); n+=$4+$6+$8+$10} END{print n+0}')
    printf '%-8s req/s=%-10s p50=%-8sms p99=%-8sms errors=%s\n' "$1" "${RPS[$1]:-FAILED}" "${P50[$1]}" "${P99[$1]}" "${ERR[$1]}"
}

echo "==> $DUR per target, $CONNS connections, wrk on CPU 1, proxies on CPU 0"
run direct 18081
run nginx 18090
run haproxy 18091
run sluice 18092
run relay 18093

echo "==> sluice again, swapping the routing table $SWAPS times under load"
pid=$(cat "$D/sluice.pid")
( for i in $(seq 2 $((SWAPS + 1))); do routes "$i" $((i % 101)) > "$D/routes.next"; mv "$D/routes.next" "$D/routes.json"; kill -HUP "$pid"; sleep 0.005; done ) &
swapper=$!
run swaps 18092
wait $swapper
reloads=$(grep -c "routing table reloaded" "$D/sluice.log" || true)
rss_kb=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "sluice/nginx req/s:   $(ratio "${RPS[sluice]}" "${RPS[nginx]}")   (goal >= 1.10)"
echo "sluice/nginx p99:     $(ratio "${P99[sluice]}" "${P99[nginx]}")   (goal <= 1.00)"
echo "sluice/haproxy req/s: $(ratio "${RPS[sluice]}" "${RPS[haproxy]}")"
echo "sluice/direct req/s:  $(ratio "${RPS[sluice]}" "${RPS[direct]}")   (goal >= 0.75)"
echo "relay/nginx req/s:    $(ratio "${RPS[relay]}" "${RPS[nginx]}")   (the NIO floor: a TCP relay that parses nothing)"
echo "sluice/relay req/s:   $(ratio "${RPS[sluice]}" "${RPS[relay]}")"
echo "swaps applied:        $reloads of $SWAPS, errors under swaps: ${ERR[swaps]}   (goal 0)"
echo "sluice peak RSS:      $((rss_kb / 1024)) MB   (goal <= 64)"
