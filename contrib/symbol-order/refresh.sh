#!/usr/bin/env bash
# Make contrib/symbol-order/legerd.order again: the functions a release legerd runs in
# an operator's everyday work, which agent/build.rs links first so that they share
# pages (docs/performance.md, "Idle RSS: hot code first").
#
# Run it as root (it boots a test-bed machine) after a toolchain, dependency or
# version change, or when a release build's idle RSS has grown back: the list names
# the mangled symbols of one build, and names another build lacks are skipped.
#
# What it does:
#  1. builds legerd in release, without an order (the names do not depend on it), and
#     the workspace's debug binaries (legerctl for the machine);
#  2. runs that legerd under valgrind's callgrind on the test bed through the bench's
#     scenario at 10 and 100 apps (`LEGER_BENCH_HOT_CODE`: first converge, manual
#     passes, status, a one-app change, a poll and a minute idle, a metrics scrape);
#  3. runs it again natively with a uprobe on every function callgrind did not see
#     (native-hits.py; needs tracefs), for what only the real CPU and real timing run;
#  4. lists the legerd functions that ran, in address order.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=contrib/symbol-order/legerd.order
prefix=${LEGER_E2E_PREFIX:-order-}

command -v valgrind.bin >/dev/null || {
    echo "refresh.sh: needs valgrind (apt-get install valgrind)" >&2
    exit 1
}
LEGER_LINK_ORDER=0 cargo build --release -p legerd --bin legerd
cargo build --workspace --bins
profiles=$(mktemp -d /tmp/legerd-callgrind.XXXXXX)
trap 'rm -rf "$profiles"' EXIT
# Two sizes: at 100 apps sorts and maps take code paths that 10 apps never reach.
LEGER_E2E_PREFIX=$prefix LEGER_BENCH_SIZES=10,100 LEGER_BENCH_LEGERD="$PWD/target/release/legerd" \
    LEGER_BENCH_HOT_CODE="$profiles/callgrind" \
    cargo bench --profile dev -p leger-benches --bench testbed
python3 contrib/symbol-order/hot-symbols.py target/release/legerd \
    "$profiles/callgrind.10" "$profiles/callgrind.100" > "$profiles/callgrind.order"
# Native pass: what ran outside that list on the real CPU at full speed (aws-lc, sha2
# and crc32fast pick code by CPU feature, which valgrind hides; timing picks task paths).
native=()
if [ -w /sys/kernel/tracing/uprobe_events ]; then
    python3 contrib/symbol-order/native-hits.py arm target/release/legerd "$profiles/callgrind.order"
    LEGER_E2E_PREFIX=$prefix LEGER_BENCH_SIZES=100 LEGER_BENCH_LEGERD="$PWD/target/release/legerd" \
        cargo bench --profile dev -p leger-benches --bench testbed ||
        echo "refresh.sh: the native run failed; its hits so far are still used" >&2
    python3 contrib/symbol-order/native-hits.py collect "$profiles/native.names"
    native=("$profiles/native.names")
else
    echo "refresh.sh: no tracefs (mount -t tracefs nodev /sys/kernel/tracing): callgrind's list only" >&2
fi
python3 contrib/symbol-order/hot-symbols.py target/release/legerd \
    "$profiles/callgrind.10" "$profiles/callgrind.100" "${native[@]}" > "$out.new"
mv "$out.new" "$out"
echo "refresh.sh: wrote $out ($(wc -l < "$out") functions); rebuild the release legerd to use it"
