# Shared by contrib/demo.sh, contrib/run-tests.sh and .ci/run (sourced, not run).
# They must work on a fresh machine exactly as the README writes them: as root, or
# with sudo from a user whose Rust toolchain lives in ~/.cargo (rustup).

leger_say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
[ -n "${NO_COLOR:-}" ] || [ ! -t 2 ] && leger_say() { printf '\n== %s\n' "$*" >&2; }

# Root is needed for systemd-nspawn. Says how to get it, with or without sudo.
leger_need_root() {
    [ "$(id -u)" = 0 ] && return 0
    if command -v sudo >/dev/null; then
        echo "$1: needs root to boot test machines with systemd-nspawn: run  sudo $1" >&2
    else
        echo "$1: needs root to boot test machines with systemd-nspawn: run it as root (there is no sudo here)" >&2
    fi
    exit 2
}

# Puts cargo on PATH. Under sudo, root's PATH has no rustup cargo: use the invoking
# user's toolchain (~/.cargo/bin with ~/.rustup), keep root's own CARGO_HOME for the
# registry cache, and give target/ back to that user at exit so their own builds work.
leger_find_cargo() {
    command -v cargo >/dev/null && return 0
    local home=
    if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
        home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
    fi
    if [ -n "$home" ] && [ -x "$home/.cargo/bin/cargo" ]; then
        echo "using $SUDO_USER's Rust toolchain from $home/.cargo/bin (sudo drops it from PATH)" >&2
        export PATH="$home/.cargo/bin:$PATH"
        [ -d "$home/.rustup" ] && export RUSTUP_HOME="${RUSTUP_HOME:-$home/.rustup}"
        LEGER_GIVE_BACK_TO="${SUDO_UID}:${SUDO_GID}"
        return 0
    fi
    cat >&2 <<MSG
cargo was not found on root's PATH${SUDO_USER:+, nor in ~$SUDO_USER/.cargo/bin}.
leger needs Rust 1.89 or newer (Debian 12's packaged cargo is too old). Either
  - install it with rustup as your own user, then run this again with sudo
    (this script then uses ~/.cargo/bin of the user who ran sudo), or
  - install it with rustup as root, or run: PATH=/path/to/cargo/bin:\$PATH $0
MSG
    exit 2
}

# Gives target/ back to the user who ran sudo (see leger_find_cargo).
leger_give_back_target() {
    if [ -n "${LEGER_GIVE_BACK_TO:-}" ] && [ -d target ]; then
        chown -R "$LEGER_GIVE_BACK_TO" target 2>/dev/null || true
    fi
}

# Installs a cargo subcommand the scripts need, saying so (it takes a few minutes once).
leger_cargo_tool() {
    local tool=$1
    command -v "cargo-$tool" >/dev/null && return 0
    leger_say "installing cargo-$tool (once; a few minutes): cargo install --locked cargo-$tool"
    cargo install --locked "cargo-$tool"
}

# Tells the user when the test bed's rootfs is about to be built for the first time.
leger_testbed_notice() {
    local dir=${LEGER_TESTBED_DIR:-/var/tmp/leger-testbed}
    if [ ! -f "$dir/base-${LEGER_TESTBED_SUITE:-trixie}.ready" ]; then
        leger_say "first run: building the test bed (Debian ${LEGER_TESTBED_SUITE:-trixie} with systemd and podman) with debootstrap; about 1-2 minutes, cached in $dir"
    fi
}
