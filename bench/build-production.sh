#!/usr/bin/env bash
# bench/build-production.sh PRODUCT...: builds each product with scripts/build-release (the production
# build: release, the Swift runtime linked in, no dynamic exclusivity checks), checks that the binaries
# carry no shared Swift runtime, and prints the directory that holds them. The socket benches measure
# Sluice and the NIO floors built this way, side by side, so a floor gets whatever the build gives
# Sluice. The compiler's output goes to /tmp/sluice-bench-build.log (shown if the build fails).
set -euo pipefail
cd "$(dirname "$0")/.."
log=/tmp/sluice-bench-build.log
: > "$log"
echo "==> scripts/build-release --product $* (the first build takes 10-20 minutes; progress in $log)" >&2
for product in "$@"; do
    bin=$(scripts/build-release --product "$product" 2>> "$log") || { cat "$log" >&2; exit 1; }
    if ldd "$bin/$product" | grep -q libswiftCore; then
        echo "error: $bin/$product links the Swift runtime dynamically; scripts/build-release should link it in" >&2
        exit 1
    fi
done
echo "$bin"
