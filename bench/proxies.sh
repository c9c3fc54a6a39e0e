# Sourced by bench/profile.sh and bench/refcounts.sh: starts the proxies they compare, each pinned to
# CPU 0 with one event loop, Sluice (from $BIN) and the NIO relay floor, and $BASELINE (another sluice
# binary) when set. Fills PORT, PID and TARGETS and writes pid files to $D for the caller's cleanup.
#
#   start_proxies ROUTES_FILE RELAY_UPSTREAM_PORT
start_proxies() {
    local routes=$1 relay_upstream=$2
    TARGETS=(sluice relay)
    PORT[sluice]=$(port); taskset -c 0 "$BIN/sluice" proxy --routes "$routes" --listen "127.0.0.1:${PORT[sluice]}" --event-loops 1 > "$D/sluice.log" 2>&1 &
    PID[sluice]=$!; echo "${PID[sluice]}" > "$D/sluice.pid"
    PORT[relay]=$(port); taskset -c 0 "$BIN/relay-floor" "${PORT[relay]}" "$relay_upstream" > /dev/null 2>&1 &
    PID[relay]=$!; echo "${PID[relay]}" > "$D/relay.pid"
    if [ -n "${BASELINE:-}" ]; then
        PORT[baseline]=$(port); taskset -c 0 "$BASELINE" proxy --routes "$routes" --listen "127.0.0.1:${PORT[baseline]}" --event-loops 1 > "$D/baseline.log" 2>&1 &
        PID[baseline]=$!; echo "${PID[baseline]}" > "$D/baseline.pid"
        TARGETS+=(baseline)
    fi
    local p
    for p in "${PORT[@]}"; do python3 -c "import sys; sys.path.insert(0, 'bench'); import benchlib; benchlib.wait_port($p)"; done
}
