#!/usr/bin/env bash
# The test command: unit, integration and end-to-end tests.
#
#   contrib/run-tests.sh            # as root
#   sudo contrib/run-tests.sh       # finds your ~/.cargo/bin toolchain under sudo
#
# The end-to-end tests boot real systemd + podman machines with systemd-nspawn
# (contrib/testbed/testbed.sh), so this needs root. The first run builds the test bed's
# root filesystem (about 1-2 minutes, cached in /var/tmp/leger-testbed), installs
# cargo-nextest and cargo-deb if they are missing, and builds the Debian package the
# package test installs (contrib/package.sh deb; LEGER_PACKAGE_PROFILE=dev for a
# quicker debug build). Extra arguments go to cargo nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=contrib/lib/common.sh
. contrib/lib/common.sh
leger_need_root "$0"
leger_find_cargo
trap leger_give_back_target EXIT
leger_cargo_tool nextest
leger_cargo_tool deb

# Build the rootfs cache once up front, so parallel tests don't all wait on its lock.
leger_testbed_notice
contrib/testbed/testbed.sh prepare
# The podman-version tests also boot Debian sid (podman 5.8): its own cache.
LEGER_TESTBED_SUITE=sid contrib/testbed/testbed.sh prepare
leger_say "building the Debian package for the package test"
contrib/package.sh deb
# The e2e tests run the built binaries inside the test bed.
cargo build --workspace --bins --locked
cargo nextest run --workspace --locked --no-fail-fast "$@"
