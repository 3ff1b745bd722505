#!/usr/bin/env bash
# The test command: unit, integration and end-to-end tests.
#
# The end-to-end tests boot real systemd + podman machines with systemd-nspawn
# (contrib/testbed/testbed.sh), so this needs root. The first run builds the
# test bed's root filesystem (about 1-2 minutes, cached in /var/tmp/leger-testbed).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "run-tests.sh: the end-to-end tests boot systemd-nspawn machines and need root: sudo $0" >&2
    exit 2
fi
# Build the rootfs cache once up front, so parallel tests don't all wait on its lock.
contrib/testbed/testbed.sh prepare
# The podman-version tests also boot Debian sid (podman 5.8): its own cache.
LEGER_TESTBED_SUITE=sid contrib/testbed/testbed.sh prepare
# The e2e tests run the built binaries inside the test bed.
cargo build --workspace --bins --locked
exec cargo nextest run --workspace --locked --no-fail-fast "$@"
