#!/usr/bin/env bash
# bench/build-production.sh PRODUCT...: builds each product with scripts/build-release (the production
# build: release, the Swift runtime linked in, no dynamic exclusivity checks, the execution profile),
# checks that the binaries carry no shared Swift runtime, and prints the directory that holds them.
# The socket benches measure Sluice and the NIO floors built this way, side by side, so a floor gets
# whatever the build gives Sluice. The compiler's output goes to /tmp/sluice-bench-build.log (shown if
# the build fails).
#
#   bench/build-production.sh --profile   # says which profile scripts/build-release uses, for a bench's record
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --profile ]; then
    if [ "${SLUICE_PGO:-on}" = off ]; then echo "SLUICE_PGO=off: no profile"
    else echo "the profile trained at $(awk '/^commit:/ { print substr($2, 1, 9) }' scripts/pgo/trained)"; fi
    exit 0
fi
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
# scripts/build-release's warning that the profile is older than the code, where it will be seen.
grep '^warning: Sources/' "$log" | sort -u >&2 || true
echo "$bin"
