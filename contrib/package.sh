#!/usr/bin/env bash
# Builds leger's package and prints its path as the last line.
#
#   contrib/package.sh deb     # target/package/leger_<version>-1_<arch>.deb (cargo-deb)
#   contrib/package.sh rpm     # target/package/leger-<version>-1.<arch>.rpm (rpmbuild, contrib/rpm/leger.spec)
#
# Both ship legerd and legerctl in /usr/bin, the system and user units, sysusers.d
# (groups leger, leger-admin), tmpfiles.d, the default config in
# /usr/lib/leger/config.d/, man pages and bash/zsh/fish completions generated from the
# clap definitions (leger-docgen). docs/packaging.md says what is where, and why.
#
# LEGER_PACKAGE_PROFILE=dev packages a debug build (quicker, for local tries only).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: $0 deb|rpm" >&2
    echo "  deb   build a Debian package with cargo-deb (cargo install --locked cargo-deb)" >&2
    echo "  rpm   build an RPM with rpmbuild (apt-get install rpm) from contrib/rpm/leger.spec" >&2
}
if [ $# -ne 1 ]; then
    echo "package.sh: expected one argument, the package format (deb or rpm); got $#" >&2
    usage; exit 2
fi
format=$1
case "$format" in
    deb) command -v cargo-deb >/dev/null || {
            echo "package.sh: cargo-deb is not installed; install it with: cargo install --locked cargo-deb" >&2; exit 1; } ;;
    rpm) command -v rpmbuild >/dev/null || {
            echo "package.sh: rpmbuild is not installed; install it with: apt-get install rpm (Debian) or dnf install rpm-build (Fedora)" >&2; exit 1; } ;;
    *) echo "package.sh: unknown package format '$format': use deb or rpm" >&2; usage; exit 2 ;;
esac

profile=${LEGER_PACKAGE_PROFILE:-release}
case "$profile" in
    release) profile_dir=release ;;
    dev) profile_dir=debug ;;
    *) echo "package.sh: LEGER_PACKAGE_PROFILE must be release or dev, not '$profile'" >&2; exit 2 ;;
esac

say() { echo "package.sh: $*" >&2; }
repo=$PWD
target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
version=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "legerd"))')
# Always under the checkout (cargo-deb's asset paths are relative to it), even when
# CARGO_TARGET_DIR puts the binaries elsewhere.
out=$repo/target/package
gen=$out/gen

say "building legerd, then legerctl and leger-docgen ($profile)"
# legerd on its own: built together, the shared dependencies would take the union of
# the three packages' features, and with it other symbol names, which the release
# link order (contrib/symbol-order/legerd.order, made from a build of legerd alone)
# would no longer match. The second build does not touch legerd's binary.
cargo build --locked --profile "$profile" -p legerd >&2
cargo build --locked --profile "$profile" -p legerctl -p leger-docgen >&2
bin=$target/$profile_dir

say "generating man pages and completions into $gen"
rm -rf "$gen"
mkdir -p "$gen/man/man5"
"$bin/leger-docgen" "$gen" >/dev/null
cp docs/man/*.5 "$gen/man/man5/"
find "$gen/man" -type f -name '*.[158]' -exec gzip -9nf {} +

case "$format" in
deb)
    say "cargo deb"
    cargo deb --locked -p legerd --no-build --profile "$profile" --output "$out/" >&2
    pkg=$out/leger_${version}-1_$(dpkg --print-architecture).deb
    ;;
rpm)
    top=$out/rpmbuild
    rm -rf "$top"
    mkdir -p "$top"/{BUILD,RPMS,SOURCES,SPECS,SRPMS,BUILDROOT}
    say "rpmbuild -bb contrib/rpm/leger.spec"
    # --nodeps: the BuildRequires name Fedora's macro packages, which Debian's rpm
    # database does not list; the spec falls back to its own definitions.
    rpmbuild -bb --nodeps contrib/rpm/leger.spec \
        --define "_topdir $top" \
        --define "leger_src $repo" \
        --define "leger_bin $bin" \
        --define "leger_gen $gen" \
        --define "leger_version $version" >&2
    built=$(find "$top/RPMS" -name "leger-${version}-*.rpm" | head -n 1)
    [ -n "$built" ] || { echo "package.sh: rpmbuild produced no leger-$version RPM under $top/RPMS" >&2; exit 1; }
    pkg=$out/$(basename "$built")
    mv "$built" "$pkg"
    ;;
esac
[ -f "$pkg" ] || { echo "package.sh: expected $pkg, but it is not there" >&2; exit 1; }
echo "$pkg"
