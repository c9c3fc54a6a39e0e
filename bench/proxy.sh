#!/usr/bin/env bash
# Proxy benchmark: wrk -> [proxy] -> two upstreams weighted 90/10, Sluice side by side with nginx,
# HAProxy, no proxy at all, and a raw SwiftNIO TCP relay that parses nothing (the floor of any NIO
# proxy design on the machine), in one run.
#
# Each proxy is pinned to CPU 0 with one worker (Sluice: one event loop; nginx: one worker; HAProxy:
# one thread). The upstream nginx and wrk share CPU 1. A second Sluice serves the same split with an
# A/B experiment on the route (issue 11: every request's exposure recorded in the event loop's log, at
# its default capacity, so the log is full and evicting for most of the run); its throughput is
# compared with the plain split's, round by round, next to a third, identical plain Sluice (sluice2),
# whose ratio to the first shows how far two identical processes differ on this box. TLS termination
# (issue 14): nginx and Sluice each serve the same split over TLS with the same self-signed certificate
# (wrk negotiates TLS 1.3, keep-alive). Then it runs Sluice again while the routing table is
# swapped 1,000 times, and reports errors and Sluice's peak RSS, and counts Sluice's allocations per
# request (a perf uprobe on libc's malloc over 3 s of wrk).
#
#   bench/proxy.sh            # env: ROUNDS (default 5), DUR (default 5s), CONNS (default 64), SWAPS (default 1000)
#   ONLY="nginx sluice sluice2" ROUNDS=240 DUR=2s bench/proxy.sh   # only these targets, many short rounds
#                             # (for p99, which moves most); no swaps and no malloc count
#
# The machine is shared and noisy (±20% from one minute to the next), so the targets take turns:
# ROUNDS rounds, each running every target for DUR in a new random order. It prints every round, then each target's median,
# the ratios of the medians, and the median of the per-round ratios (each round's targets ran within
# seconds of each other, so drift between rounds cancels out of those) with their middle half (the
# quartiles: how much one round's ratio moves by chance) and a 95% confidence interval for that median
# (distribution-free, from the order statistics): a goal the median meets with the interval across the
# line is met by less than chance moves it.
# p99 moves most: the same line for a second, identical Sluice shows how far it moves with nothing changed,
# and the relay's p99 against nginx's and Sluice's against the relay's show what the NIO floor's own tail is.
#
# Builds Sluice and the relay first, both with scripts/build-release (the production build).
# Installs nginx-light, haproxy, wrk, openssl and linux-perf when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}; DUR=${DUR:-5s}; CONNS=${CONNS:-64}; SWAPS=${SWAPS:-1000}; ONLY=${ONLY:-}

need=()
for t in nginx haproxy wrk openssl perf; do command -v $t >/dev/null || need+=("$t"); done
if ((${#need[@]})); then
    echo "==> installing nginx-light haproxy wrk openssl linux-perf"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light haproxy wrk openssl linux-perf >/dev/null
fi
BIN=$(bench/build-production.sh sluice relay-floor)
SLUICE="$BIN/sluice"
RELAY="$BIN/relay-floor"

D=$(mktemp -d)
cleanup() {
    for p in "$D"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
    sleep 0.3; rm -rf "$D"
}
trap cleanup EXIT

# One certificate for both TLS terminators: ECDSA P-256, as a production edge would serve.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$D/tls.key" -out "$D/tls.crt" 2>/dev/null

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
  server { listen 127.0.0.1:18090; location / { proxy_pass http://models; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:18096 ssl; ssl_certificate $D/tls.crt; ssl_certificate_key $D/tls.key; ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://models; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
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
# The same split with an experiment on the route.
routes 1 10 | sed 's|"pathPrefix": "/",|"pathPrefix": "/", "experiment": {"id": "m/v2@1", "windowMilliseconds": 600000},|' > "$D/routes-experiment.json"
grep -q '"experiment"' "$D/routes-experiment.json" || { echo "error: could not add the experiment to the routes" >&2; exit 1; }

for port in 18081 18082 18090 18091 18092 18093 18094 18095 18096 18097; do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        echo "error: port $port is already in use; stop what listens there and run again" >&2
        exit 1
    fi
done

taskset -c 1 nginx -c "$D/up.conf" -p "$D" & echo $! > "$D/up.pid"
taskset -c 0 nginx -c "$D/px.conf" -p "$D" & echo $! > "$D/px.pid"
taskset -c 0 haproxy -db -q -f "$D/ha.cfg" & echo $! > "$D/ha.pid"
taskset -c 0 "$SLUICE" proxy --routes "$D/routes.json" --listen 127.0.0.1:18092 --event-loops 1 > "$D/sluice.log" 2>&1 & echo $! > "$D/sluice.pid"
taskset -c 0 "$SLUICE" proxy --routes "$D/routes-experiment.json" --listen 127.0.0.1:18094 --event-loops 1 > "$D/sluicex.log" 2>&1 & echo $! > "$D/sluicex.pid"
taskset -c 0 "$SLUICE" proxy --routes "$D/routes.json" --listen 127.0.0.1:18095 --event-loops 1 > "$D/sluice2.log" 2>&1 & echo $! > "$D/sluice2.pid"
taskset -c 0 "$SLUICE" proxy --routes "$D/routes.json" --listen 127.0.0.1:18097 --event-loops 1 --tls-cert "$D/tls.crt" --tls-key "$D/tls.key" > "$D/sluicetls.log" 2>&1 & echo $! > "$D/sluicetls.pid"
# The floor of any SwiftNIO proxy: a raw TCP relay on one event loop that parses nothing (bench/RelayFloor).
taskset -c 0 "$RELAY" 18093 18081 > /dev/null 2>&1 & echo $! > "$D/relay.pid"
for port in 18081 18082 18090 18091 18092 18093 18094 18095 18096 18097; do
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

declare -A RPS P50 P99 ERR USER SYS PID
# The process doing each proxy's work (nginx: its one worker), for CPU time per request.
PID[nginx]=$(pgrep -P "$(cat "$D/px.pid")" | head -1); PID[haproxy]=$(cat "$D/ha.pid")
PID[sluice]=$(cat "$D/sluice.pid"); PID[relay]=$(cat "$D/relay.pid"); PID[sluice+ab]=$(cat "$D/sluicex.pid"); PID[sluice2]=$(cat "$D/sluice2.pid")
PID[nginx-tls]=${PID[nginx]}; PID[sluice-tls]=$(cat "$D/sluicetls.pid")
TCK=$(getconf CLK_TCK)
cputicks() { [ -n "${1:-}" ] && awk '{ print $14, $15 }' "/proc/$1/stat" || echo "0 0"; }
ms() { # wrk latency (850.00us, 1.23ms, 1.01s) to milliseconds
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}
run() { # NAME PORT [DURATION]: appends this run's figures to the target's lists (NAME *-tls: over https)
    local out rps p50 p99 err u0 s0 u1 s1 n scheme=http
    [[ $1 == *-tls ]] && scheme=https
    read -r u0 s0 < <(cputicks "${PID[$1]:-}")
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${3:-$DUR}" --latency "$scheme://127.0.0.1:$2/v2/models/m/infer" 2>&1) || true
    read -r u1 s1 < <(cputicks "${PID[$1]:-}")
    n=$(echo "$out" | awk '/requests in/{print $1}')
    if [ -n "${PID[$1]:-}" ] && [ "${n:-0}" -gt 0 ]; then
        USER[$1]+="$(awk -v t=$((u1 - u0)) -v k="$TCK" -v n="$n" 'BEGIN { print t / k / n * 1e6 }') "
        SYS[$1]+="$(awk -v t=$((s1 - s0)) -v k="$TCK" -v n="$n" 'BEGIN { print t / k / n * 1e6 }') "
    fi
    rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
    p50=$(ms "$(echo "$out" | awk '$1=="50%"{print $2}')")
    p99=$(ms "$(echo "$out" | awk '$1=="99%"{print $2}')")
    err=$(echo "$out" | awk '/Non-2xx/{n+=$NF} /Socket errors/{gsub(",",""); n+=$4+$6+$8+$10} END{print n+0}')
    RPS[$1]+="${rps:-0} "; P50[$1]+="$p50 "; P99[$1]+="$p99 "; ERR[$1]=$(( ${ERR[$1]:-0} + err ))
    printf '  %-8s req/s=%-10s p50=%-8sms p99=%-8sms errors=%s\n' "$1" "${rps:-FAILED}" "$p50" "$p99" "$err"
}
median() { echo "$@" | tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
pairs() { # OP A B: the per-round ratios A[i]/B[i]
    local -a a=(${RPS[$2]}) b=(${RPS[$3]}) pa=(${P99[$2]}) pb=(${P99[$3]})
    for i in "${!a[@]}"; do
        if [ "$1" = rps ]; then awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN { if (y > 0) print x / y }'
        else awk -v x="${pa[$i]}" -v y="${pb[$i]}" 'BEGIN { if (y > 0) print x / y }'; fi
    done
}

TARGETS=("direct 18081" "nginx 18090" "haproxy 18091" "sluice 18092" "sluice+ab 18094" "sluice2 18095" "relay 18093" "nginx-tls 18096" "sluice-tls 18097")
if [ -n "$ONLY" ]; then
    kept=()
    for name in $ONLY; do
        found=""
        for target in "${TARGETS[@]}"; do [ "${target%% *}" = "$name" ] && kept+=("$target") && found=1; done
        [ -n "$found" ] || { echo "error: ONLY names $name, which is not a target (${TARGETS[*]%% *})" >&2; exit 1; }
    done
    TARGETS=("${kept[@]}")
fi
echo "==> $ROUNDS rounds of $DUR per target, $CONNS connections, wrk on CPU 1, proxies on CPU 0"
for round in $(seq "$ROUNDS"); do
    # A new random order each round: no target always runs just after the same other one.
    mapfile -t order < <(printf '%s\n' "${TARGETS[@]}" | shuf)
    echo "round $round: ${order[*]%% *}"
    for target in "${order[@]}"; do run $target; done
done
echo
echo "median of $ROUNDS rounds (CPU: the proxy process's user and system time per request, from /proc):"
for target in "${TARGETS[@]}"; do
    set -- $target
    cpu=""
    [ -n "${USER[$1]:-}" ] && cpu=$(printf 'cpu/req: user %.1f us, sys %.1f us' "$(median ${USER[$1]})" "$(median ${SYS[$1]})")
    printf '  %-8s req/s=%-10s p50=%-8sms p99=%-8sms errors=%-3s %s\n' "$1" "$(median ${RPS[$1]})" "$(median ${P50[$1]})" "$(median ${P99[$1]})" "${ERR[$1]}" "$cpu"
done

pid=$(cat "$D/sluice.pid")
if [ -z "$ONLY" ]; then
echo "==> sluice again, swapping the routing table $SWAPS times under load"
( for i in $(seq 2 $((SWAPS + 1))); do routes "$i" $((i % 101)) > "$D/routes.next"; mv "$D/routes.next" "$D/routes.json"; kill -HUP "$pid"; sleep 0.005; done ) &
swapper=$!
run swaps 18092 "$((ROUNDS * ${DUR%s}))s"
wait $swapper
reloads=$(grep -c "routing table reloaded" "$D/sluice.log" || true)

# Allocations per request: a uprobe on libc's malloc, counted on the Sluice process over 3 s of wrk.
echo "==> sluice's mallocs per request (perf probe on malloc)"
libc=$(ldd "$SLUICE" | awk '$1 == "libc.so.6" { print $3 }')
perf probe -q -x "$libc" malloc >/dev/null 2>&1 || true # already there from an earlier run: fine
perf probe -l 2>/dev/null | grep -q 'probe_libc:malloc' || { echo "error: perf cannot probe malloc in $libc" >&2; exit 1; }
requests=$(perf stat -e probe_libc:malloc -x, -o "$D/mallocs.csv" -p "$pid" -- \
    taskset -c 1 wrk -t1 -c"$CONNS" -d3s "http://127.0.0.1:18092/v2/models/m/infer" | awk '/requests in/ { print $1 }')
mallocs=$(awk -F, -v n="$requests" '/probe_libc:malloc/ { printf "%.2f", $1 / n }' "$D/mallocs.csv")
rss_kb=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
median_ci() { # a distribution-free 95% confidence interval for the median of the values: "[lo, hi]"
    echo "$@" | tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END {
        h = 0.98 * sqrt(NR); lo = int(NR / 2 - h); hi = int(NR / 2 + 1 + h + 0.999)
        if (lo < 1 || hi > NR) { print "[too few rounds]"; exit }
        printf "[%.2f, %.2f]", v[lo], v[hi] }'
}
quartiles() { # the middle half of the values: "Q1-Q3"
    echo "$@" | tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END {
        q = (NR - 1) * 0.25; i = int(q); lo = v[i + 1] + (v[i + 2] - v[i + 1]) * (q - i) * (NR > 1)
        q = (NR - 1) * 0.75; i = int(q); hi = v[i + 1] + (v[i + 2] - v[i + 1]) * (q - i) * (i + 2 <= NR)
        printf "%.2f-%.2f", lo, hi }'
}
line() { # LABEL rps|p99 A B [NOTE]: ratio of the medians, median of per-round ratios, their middle half, its 95% CI
    local a b per
    [ -n "${RPS[$3]:-}" ] && [ -n "${RPS[$4]:-}" ] || return 0 # a target left out by ONLY
    if [ "$2" = rps ]; then a=$(median ${RPS[$3]}); b=$(median ${RPS[$4]}); else a=$(median ${P99[$3]}); b=$(median ${P99[$4]}); fi
    per=$(pairs "$2" "$3" "$4")
    printf '%-22s%-19s%-9s%-11s%-17s%s\n' "$1:" "$(ratio "$a" "$b")" "$(printf '%.2f' "$(median $per)")" "$(quartiles $per)" "$(median_ci $per)" "${5:-}"
}
summary() {
line 'sluice/nginx req/s' rps sluice nginx '(goal >= 1.00)'
line 'sluice/nginx p99' p99 sluice nginx '(goal <= 1.00)'
line 'sluice2/nginx p99' p99 sluice2 nginx '(the same again from an identical Sluice: how far p99 moves by chance)'
line 'sluice/haproxy req/s' rps sluice haproxy '(goal >= 1.00)'
line 'sluice/direct req/s' rps sluice direct '(goal >= 0.75)'
line 'sluice+ab/sluice' rps sluice+ab sluice '(an experiment on the route; goal >= 0.95)'
line 'sluice+ab/sluice p99' p99 sluice+ab sluice
line 'sluice2/sluice' rps sluice2 sluice '(two identical processes: the noise floor of the line above)'
[ -n "${RPS[sluice+ab]:-}" ] && echo "sluice+ab peak RSS:   $(( $(awk '/VmHWM/{print $2}' "/proc/$(cat "$D/sluicex.pid")/status") / 1024 )) MB   (100,000 exposures held)"
line 'relay/nginx req/s' rps relay nginx '(the NIO floor: a TCP relay that parses nothing)'
line 'relay/nginx p99' p99 relay nginx "(the floor's tail: what Sluice's p99 stands on)"
line 'sluice/relay req/s' rps sluice relay '(goal >= 0.95)'
line 'sluice/relay p99' p99 sluice relay
line 'TLS sluice/nginx' rps sluice-tls nginx-tls '(TLS termination, keep-alive; goal >= 0.90)'
line 'TLS sluice/nginx p99' p99 sluice-tls nginx-tls
[ -n "$ONLY" ] && { echo "(ONLY=\"$ONLY\": no routing-table swaps and no malloc count in this run)"; return; }
echo "swaps applied:        $reloads of $SWAPS, errors under swaps: ${ERR[swaps]}   (goal 0)"
echo "sluice peak RSS:      $((rss_kb / 1024)) MB   (goal <= 64)"
echo "sluice mallocs/req:   $mallocs   (over $requests requests; 0 is the design: heads and exchanges reused)"
}
echo
echo "                      ratio of medians   median of per-round ratios (their middle half, the median's 95% CI)"
summary | tee "$D/summary.txt"
# Appended, dated, to bench/RESULTS.md with the medians of every target.
{
    echo "### $(date -u +%Y-%m-%d): \`${ONLY:+ONLY=\"$ONLY\" }ROUNDS=$ROUNDS DUR=$DUR CONNS=$CONNS bench/proxy.sh\` at $(git rev-parse --short HEAD), Sluice and the relay from scripts/build-release ($(bench/build-production.sh --profile)) (appended by the script)"
    echo
    echo '```'
    for target in "${TARGETS[@]}"; do
        set -- $target
        cpu=""
        [ -n "${USER[$1]:-}" ] && cpu=$(printf 'cpu/req: user %.1f us, sys %.1f us' "$(median ${USER[$1]})" "$(median ${SYS[$1]})")
        printf '%-10s req/s=%-10s p50=%-8sms p99=%-8sms errors=%-3s %s\n' "$1" "$(median ${RPS[$1]})" "$(median ${P50[$1]})" "$(median ${P99[$1]})" "${ERR[$1]}" "$cpu"
    done
    echo
    echo "                      ratio of medians   median of per-round ratios (their middle half, the median's 95% CI)"
    cat "$D/summary.txt"
    echo '```'
} > "$D/results.md"
python3 -c "import sys; sys.path.insert(0, 'bench'); from benchlib import append_results; append_results('Proxy (\`bench/proxy.sh\`)', '', open('$D/results.md').read())"
echo "==> appended to bench/RESULTS.md"
