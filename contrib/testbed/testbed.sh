#!/usr/bin/env bash
# testbed.sh - real systemd + D-Bus + podman + quadlet test bed for legerd.
#
# The project's copy of the shared test bed recipe. The Rust harness (tests/src/lib.rs,
# crate leger-e2e) drives it: `up` with a machine name, a share dir and an agent dir, then
# reads $RUN/env. Several machines may run side by side: each has its own name, run dir,
# overlay upper, bus socket and cgroup; they share the read-only cached base rootfs, whose
# build is serialized by a flock on $LEGER_TESTBED_DIR/.lock.
#
# It boots a Debian (default: trixie) rootfs with `systemd-nspawn -b`: systemd runs as
# PID 1 of the container (its own pid/mount/net/cgroup namespace), the host's PID 1
# needs NOT be systemd. Inside: dbus-daemon, podman 5.x, the quadlet generator.
#
# Why trixie: bookworm's podman is 4.3.1, which has no quadlet (added in 4.4) and
# bookworm-backports has no newer podman. trixie has podman 5.4.2 + systemd 257.
#
# Usage:
#   testbed.sh [run]        up + demo (default)
#   testbed.sh prepare      install host packages and build the cached rootfs only
#   testbed.sh up           build/cache rootfs if needed, boot the container, import test image
#   testbed.sh demo         write hello.container, Reload+StartUnit over D-Bus from the host,
#                           check ActiveState, podman ps, journal; secret + quadlet -dryrun checks
#   testbed.sh demo-user    rootless variant: user@UID.service + ~/.config/containers/systemd, user bus (inside)
#   testbed.sh logs [ARGS]  journalctl -b inside the container
#   testbed.sh env          print shell exports (bus address, quadlet dir, ...) for tests
#   testbed.sh exec CMD..   run CMD inside the container (nsenter into all its namespaces)
#   testbed.sh status       is it up?
#   testbed.sh down [--purge]  stop container, unmount, remove run state (--purge: also the cache)
#
# Environment:
#   LEGER_TESTBED_DIR        cache + state dir            (default /var/tmp/leger-testbed)
#   LEGER_TESTBED_NAME       machine name                 (default legertb)
#   LEGER_TESTBED_SUITE      Debian suite of the rootfs   (default trixie; needs podman >= 4.4)
#   LEGER_TESTBED_MIRROR     Debian mirror                (default: the host's own Debian apt source)
#   LEGER_TESTBED_AGENT_DIR  host dir bind-mounted read-only at /opt/leger inside (optional)
#   LEGER_TESTBED_SHARE_DIR  host dir bind-mounted read-write at /srv/leger inside (optional):
#                            tests put bare git repos and app dirs there
#   LEGER_TESTBED_TMPFS=1    keep per-run state (overlay upper, podman storage) on a tmpfs
#   LEGER_TESTBED_BOOT_TIMEOUT seconds to wait for the container's systemd (default 120)
#   LEGER_TESTBED_NO_APT=1   never apt-get install host prerequisites
set -euo pipefail

DIR=${LEGER_TESTBED_DIR:-/var/tmp/leger-testbed}
NAME=${LEGER_TESTBED_NAME:-legertb}
SUITE=${LEGER_TESTBED_SUITE:-trixie}
# The Debian mirror this host's apt already uses (deb822 sources first, then sources.list).
host_mirror() {
    local u=""
    [ -f /etc/apt/sources.list.d/debian.sources ] &&
        u=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
    [ -n "$u" ] || u=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
        /etc/apt/sources.list 2>/dev/null)
    echo "$u"
}
MIRROR=${LEGER_TESTBED_MIRROR:-$(host_mirror)}
BOOT_TIMEOUT=${LEGER_TESTBED_BOOT_TIMEOUT:-120}
AGENT_DIR=${LEGER_TESTBED_AGENT_DIR:-}
SHARE_DIR=${LEGER_TESTBED_SHARE_DIR:-}
SHARE_INSIDE=/srv/leger

# Bump when the rootfs recipe changes: invalidates the cached base rootfs.
RECIPE_VERSION=2
PKGS=systemd,systemd-sysv,dbus,libpam-systemd,dbus-user-session,podman,crun,conmon,netavark,aardvark-dns,nftables,iptables,passt,catatonit,uidmap,busybox-static,procps,iproute2,git,python3,curl,ca-certificates

BASE=$DIR/base-$SUITE             # cached pristine rootfs (lower layer, never booted directly)
STAMP=$DIR/base-$SUITE.ready      # written only when $BASE is complete
IMAGES=$DIR/images                # locally built image tarballs (bind-mounted ro)
RUN=$DIR/run-$NAME                # per-boot state, removed by `down`
ROOT=$RUN/root                    # overlay(lower=$BASE, upper=$RUN/upper) = container root
BUS_SOCK=$RUN/bus/system_bus_socket
BUS=unix:path=$BUS_SOCK
QUADLET_DIR=$RUN/quadlets         # = /etc/containers/systemd inside
CG_NAME=leger-testbed-$NAME

SD=org.freedesktop.systemd1
SD_PATH=/org/freedesktop/systemd1
SD_MGR=org.freedesktop.systemd1.Manager

log() { printf '[testbed %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1fs", b-a}'; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (systemd-nspawn, mounts, cgroups)"; }

# The name becomes the nspawn machine name, the hostname, and part of paths and cgroup names.
check_name() {
    [[ $NAME =~ ^[a-z0-9][a-z0-9-]{0,62}$ ]] ||
        die "LEGER_TESTBED_NAME=$NAME: use 1-63 lower-case letters, digits and '-', starting with a letter or digit"
}

# Machines that are up use $BASE as their overlay lower layer: never rebuild it under them.
base_in_use() {
    findmnt -rn -t overlay -o OPTIONS 2>/dev/null | grep -q "lowerdir=$BASE,"
}

host_prereqs() {
    local missing=()
    command -v debootstrap    >/dev/null || missing+=(debootstrap)
    command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
    command -v busctl         >/dev/null || missing+=(systemd)
    command -v nsenter        >/dev/null || missing+=(util-linux)
    # debootstrap of a Debian suite from a non-Debian host (e.g. Ubuntu CI runners) needs this keyring
    [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
    [ ${#missing[@]} = 0 ] && return 0
    [ "${LEGER_TESTBED_NO_APT:-0}" = 1 ] && die "missing host packages: ${missing[*]}"
    log "installing host packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------- cached rootfs
build_base() {
    local want="recipe=$RECIPE_VERSION suite=$SUITE pkgs=$PKGS"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -f "$IMAGES/busybox-rootfs.tar" ]; then
        log "cached rootfs OK: $BASE"
        return 0
    fi
    base_in_use && die "the cached rootfs $BASE is outdated but machines still use it: take them down first ($0 down with each LEGER_TESTBED_NAME)"
    [ -n "$MIRROR" ] || die "no Debian mirror found in the host's apt sources: set LEGER_TESTBED_MIRROR"
    local t0; t0=$(now)
    log "building rootfs $BASE (debootstrap $SUITE; debs cached in $DIR/debs)"
    rm -rf "$BASE.tmp" "$BASE" "$STAMP"
    mkdir -p "$DIR/debs" "$IMAGES"
    debootstrap --variant=minbase --cache-dir="$DIR/debs" --include="$PKGS" \
        "$SUITE" "$BASE.tmp" "$MIRROR" > "$DIR/debootstrap.log" 2>&1 \
        || { tail -20 "$DIR/debootstrap.log" >&2; die "debootstrap failed (log: $DIR/debootstrap.log)"; }
    log "debootstrap done in $(since "$t0")"

    local r=$BASE.tmp
    [ -x "$r/usr/libexec/podman/quadlet" ] || die "rootfs podman has no quadlet (podman < 4.4?) - use a newer suite"
    echo "$NAME" > "$r/etc/hostname"
    mkdir -p "$r/etc/containers/containers.conf.d" "$r/etc/containers/systemd" "$r/opt/leger-images" "$r/opt/leger"
    # The container gets a cgroup2 hierarchy; on hosts where the pids controller is not
    # delegated (e.g. hybrid-cgroup hosts) crun fails on podman's default pids limit (2048):
    #   crun: controller `pids` is not available under /sys/fs/cgroup/.../cgroup.controllers
    cat > "$r/etc/containers/containers.conf.d/50-leger-testbed.conf" <<'EOF'
[containers]
pids_limit = 0
EOF
    # Podman's root storage is bind-mounted from the host at boot (overlay-on-overlay is not allowed).
    chroot "$r" apt-get clean
    # Test image: a busybox-static rootfs tarball (no registry reachable) -> `podman import` at boot.
    local img; img=$(mktemp -d "$DIR/img.XXXXXX")
    mkdir -p "$img/bin" "$img/etc" "$img/tmp" "$img/proc" "$img/sys" "$img/dev" "$img/root"
    cp "$r/bin/busybox" "$img/bin/busybox"
    for a in sh ash echo sleep cat ls ps date hostname id env wget nc httpd true false kill top; do
        ln -sf busybox "$img/bin/$a"
    done
    echo "root:x:0:0:root:/root:/bin/sh" > "$img/etc/passwd"
    echo "root:x:0:" > "$img/etc/group"
    tar -C "$img" -cf "$IMAGES/busybox-rootfs.tar.tmp" .
    mv "$IMAGES/busybox-rootfs.tar.tmp" "$IMAGES/busybox-rootfs.tar"
    rm -rf "$img"
    mv "$r" "$BASE"
    echo "$want" > "$STAMP"
    log "rootfs ready in $(since "$t0"): $(du -sh "$BASE" | cut -f1) (+ debs cache $(du -sh "$DIR/debs" | cut -f1))"
}

# ---------------------------------------------------------------- container lifecycle
nspawn_pid() {   # prints the nspawn PID if it is alive and really our nspawn
    local pid
    [ -f "$RUN/nspawn.pid" ] || return 1
    pid=$(cat "$RUN/nspawn.pid")
    [ -r "/proc/$pid/cmdline" ] || return 1
    local cl; cl=$(tr '\0' ' ' < "/proc/$pid/cmdline")
    [[ $cl == "systemd-nspawn "*"--machine=$NAME "* ]] || return 1
    echo "$pid"
}
leader_pid() {   # PID 1 of the container, as seen from the host
    local ns; ns=$(nspawn_pid) || return 1
    local c; c=$(cat "/proc/$ns/task/$ns/children" 2>/dev/null | awk '{print $1}')
    [ -n "$c" ] || return 1
    echo "$c"
}
is_up() { leader_pid >/dev/null 2>&1 && [ -S "$BUS_SOCK" ]; }

tb_exec() {     # run a command inside the container, clean environment
    local p; p=$(leader_pid) || die "testbed not running"
    nsenter -t "$p" -a -r -w env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 "$@"
}
bus() { busctl --address="$BUS" "$@"; }

# cgroup handling when the host is not booted with systemd: give the container its own
# cgroup subtree so its systemd does not populate the host's root cgroup.
cg_dirs() {
    if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
        echo "/sys/fs/cgroup/$CG_NAME"
    else
        [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ] && echo "/sys/fs/cgroup/unified/$CG_NAME"
        [ -d /sys/fs/cgroup/systemd ] && echo "/sys/fs/cgroup/systemd/$CG_NAME"
    fi
    return 0
}
host_has_systemd() { [ -d /run/systemd/system ]; }

up() {
    need_root
    check_name
    if [ -n "$SHARE_DIR" ]; then
        [ -d "$SHARE_DIR" ] || die "LEGER_TESTBED_SHARE_DIR=$SHARE_DIR is not a directory: create it first"
        SHARE_DIR=$(cd "$SHARE_DIR" && pwd -P)
    fi
    if [ -n "$AGENT_DIR" ]; then
        [ -d "$AGENT_DIR" ] || die "LEGER_TESTBED_AGENT_DIR=$AGENT_DIR is not a directory"
        AGENT_DIR=$(cd "$AGENT_DIR" && pwd -P)
    fi
    if is_up; then log "already up (leader pid $(leader_pid))"; return 0; fi
    [ -e "$RUN" ] && { log "stale run state found, cleaning"; down_quiet; }
    mkdir -p "$DIR"
    # Serialize host package installs (dpkg has one lock) and builds of the shared cache
    # between machines booting side by side; the boot itself runs in parallel.
    exec 9>"$DIR/.lock"; flock 9
    host_prereqs
    build_base
    flock -u 9; exec 9>&-

    local t0; t0=$(now)
    mkdir -p "$RUN"
    if [ "${LEGER_TESTBED_TMPFS:-0}" = 1 ]; then
        mount -t tmpfs -o mode=0755,size=${LEGER_TESTBED_TMPFS_SIZE:-8G} "leger-testbed-$NAME" "$RUN"
    fi
    mkdir -p "$RUN/upper" "$RUN/work" "$ROOT" "$RUN/storage" "$RUN/bus" "$RUN/home" "$QUADLET_DIR"
    mount -t overlay "leger-testbed-$NAME" -o "lowerdir=$BASE,upperdir=$RUN/upper,workdir=$RUN/work" "$ROOT"
    # Each machine gets its own identity (the cached rootfs carries the builder's), written
    # into its overlay upper so the shared base stays pristine.
    echo "$NAME" > "$ROOT/etc/hostname"
    tr -d '-' < /proc/sys/kernel/random/uuid > "$ROOT/etc/machine-id"

    local args=(
        --directory="$ROOT" --machine="$NAME" --boot
        --register=no                         # no machined on the host
        --private-network                     # only lo; podman's bridge lives in the container's netns
        --system-call-filter='@keyring bpf'   # crun: keyctl (session keyring) + bpf (cgroup2 device filter)
        --bind="$RUN/storage:/var/lib/containers"   # podman overlay driver needs a non-overlay fs
        --bind="$RUN/bus:/run/dbus"                 # system bus socket visible on the host
        --bind="$QUADLET_DIR:/etc/containers/systemd"
        --bind="$RUN/home:/home"                    # rootless podman storage (~/.local/share/containers) must not be on overlayfs
        --bind-ro="$IMAGES:/opt/leger-images"
        --console=pipe
    )
    [ -n "$AGENT_DIR" ] && args+=(--bind-ro="$AGENT_DIR:/opt/leger")
    [ -n "$SHARE_DIR" ] && args+=(--bind="$SHARE_DIR:$SHARE_INSIDE")
    local pre=":"
    if ! host_has_systemd; then
        args+=(--keep-unit)                   # no host systemd to allocate a scope
        local d
        for d in $(cg_dirs); do mkdir -p "$d"; pre="$pre; echo \$\$ > $d/cgroup.procs"; done
    fi
    log "booting $NAME (systemd-nspawn)"
    # setsid: detach from our session; the exec keeps $! == nspawn's PID.
    SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 setsid bash -c "$pre; exec systemd-nspawn \"\$@\"" \
        nspawn "${args[@]}" < /dev/null > "$RUN/console.log" 2>&1 &
    local nspid=$!
    echo "$nspid" > "$RUN/nspawn.pid"

    local deadline=$(( $(date +%s) + BOOT_TIMEOUT )) state=""
    while :; do
        if ! kill -0 "$nspid" 2>/dev/null; then tail -30 "$RUN/console.log" >&2; die "systemd-nspawn exited"; fi
        if [ -S "$BUS_SOCK" ]; then
            state=$(bus get-property $SD $SD_PATH $SD_MGR SystemState 2>/dev/null | awk '{print $2}' | tr -d '"') || true
            case $state in running|degraded) break ;; esac
        fi
        [ "$(date +%s)" -lt "$deadline" ] || { tail -30 "$RUN/console.log" >&2; die "boot timeout (state=$state)"; }
        sleep 0.1
    done
    log "booted to SystemState=$state in $(since "$t0") (leader pid $(leader_pid))"
    [ "$state" = running ] || tb_exec systemctl --failed --no-pager >&2 || true

    t0=$(now)
    tb_exec podman import --quiet --change 'CMD ["/bin/sh"]' /opt/leger-images/busybox-rootfs.tar \
        localhost/busybox:latest >/dev/null
    log "imported localhost/busybox:latest in $(since "$t0")"
    print_env > "$RUN/env"
    log "up. Source $RUN/env for: DBUS_SYSTEM_BUS_ADDRESS / LEGER_TESTBED_QUADLET_DIR / ..."
}

saved_env() {   # the env written at boot: it knows the dirs the machine was booted with
    if [ -f "$RUN/env" ]; then cat "$RUN/env"; else print_env; fi
}

print_env() {
    cat <<EOF
export LEGER_TESTBED_NAME=$NAME
export LEGER_TESTBED_ROOT=$ROOT
export LEGER_TESTBED_LEADER_PID=$(leader_pid)
export LEGER_TESTBED_BUS_ADDRESS=$BUS
export DBUS_SYSTEM_BUS_ADDRESS=$BUS
export LEGER_TESTBED_QUADLET_DIR=$QUADLET_DIR
export LEGER_TESTBED_RUN_DIR=$RUN
export LEGER_TESTBED_SHARE_DIR=$SHARE_DIR
export LEGER_TESTBED_SHARE_INSIDE=$SHARE_INSIDE
export LEGER_TESTBED_AGENT_DIR=$AGENT_DIR
EOF
}

# ---------------------------------------------------------------- demo / smoke test
wait_state() {  # unit wanted-state timeout -> prints elapsed; fails on timeout
    local unit=$1 want=$2 timeout=${3:-60} t0 st path
    t0=$(now)
    local deadline=$(( $(date +%s) + timeout ))
    while :; do
        path=$(bus call $SD $SD_PATH $SD_MGR GetUnit s "$unit" 2>/dev/null | awk '{print $2}' | tr -d '"') || true
        st=""
        [ -n "$path" ] && st=$(bus get-property $SD "$path" org.freedesktop.systemd1.Unit ActiveState | awk '{print $2}' | tr -d '"')
        [ -z "$path" ] && [ "$want" = inactive ] && st=inactive   # unloaded after stop
        [ "$st" = "$want" ] && break
        [ "$(date +%s)" -lt "$deadline" ] || die "$unit: ActiveState=$st, wanted $want"
        sleep 0.1
    done
    echo "$(since "$t0")"
}

demo() {
    need_root
    is_up || die "testbed not up (run: $0 up)"
    local t0 el
    log "writing $QUADLET_DIR/hello.container (from the host)"
    cat > "$QUADLET_DIR/hello.container.tmp" <<'EOF'
[Unit]
Description=legerd testbed hello container

[Container]
ContainerName=hello
Image=localhost/busybox:latest
Exec=/bin/sh -c 'trap "exit 0" TERM; while :; do echo "hello from quadlet"; sleep 1 & wait $!; done'
Network=none

[Service]
Restart=on-failure
EOF
    mv "$QUADLET_DIR/hello.container.tmp" "$QUADLET_DIR/hello.container"

    log "quadlet -dryrun on the quadlet dir (inside)"
    tb_exec /usr/libexec/podman/quadlet -dryrun -no-kmsg-log >/dev/null || die "quadlet -dryrun failed"

    t0=$(now)
    log "D-Bus from host ($BUS): Reload"
    bus --timeout=60 call $SD $SD_PATH $SD_MGR Reload
    log "Reload took $(since "$t0"); generated unit: $(tb_exec systemctl show -P FragmentPath hello.service)"
    t0=$(now)
    log "D-Bus: StartUnit hello.service replace -> $(bus call $SD $SD_PATH $SD_MGR StartUnit ss hello.service replace)"
    el=$(wait_state hello.service active 60)
    log "hello.service ActiveState=active after $el (StartUnit->active)"

    local path; path=$(bus call $SD $SD_PATH $SD_MGR GetUnit s hello.service | awk '{print $2}' | tr -d '"')
    log "GetUnit -> $path; $(bus get-property $SD "$path" org.freedesktop.systemd1.Unit ActiveState SubState | tr '\n' ' ')"
    local out
    out=$(tb_exec podman ps --filter name=hello --format '{{.Names}} {{.Status}} {{.Image}}')
    log "podman ps: $out"
    grep -q '^hello Up' <<<"$out" || die "container hello not running"
    sleep 2
    out=$(tb_exec journalctl -u hello.service --no-pager)
    tail -n 4 <<<"$out" >&2
    grep -q 'hello from quadlet' <<<"$out" || die "no container output in journal"

    t0=$(now)
    local old; old=$(tb_exec podman inspect -f '{{.Id}}' hello)
    bus call $SD $SD_PATH $SD_MGR RestartUnit ss hello.service replace >/dev/null
    sleep 0.2; wait_state hello.service active 60 >/dev/null
    local new; new=$(tb_exec podman inspect -f '{{.Id}}' hello)
    [ "$old" != "$new" ] || die "RestartUnit did not replace the container"
    log "RestartUnit -> active again with a new container in $(since "$t0")"

    log "podman secret create (file driver)"
    tb_exec podman secret rm leger-demo >/dev/null 2>&1 || true
    printf 's3cr3t' | tb_exec podman secret create leger-demo - >/dev/null
    out=$(tb_exec podman secret ls --format '{{.Name}} {{.Driver}}')
    grep -q '^leger-demo file$' <<<"$out" || die "secret create failed"

    log "quadlet -dryrun: invalid file must fail"
    local bad; bad=$(tb_exec mktemp -d)
    printf '[Container]\nExec=sleep 1\nNotAKey=1\n' | tb_exec tee "$bad/bad.container" >/dev/null
    if tb_exec env QUADLET_UNIT_DIRS="$bad" /usr/libexec/podman/quadlet -dryrun -no-kmsg-log >/dev/null 2>"$RUN/quadlet-bad.err"; then
        die "quadlet accepted an invalid file"
    fi
    log "  -> rejected: $(grep converting "$RUN/quadlet-bad.err" | head -1)"
    tb_exec rm -rf "$bad"

    t0=$(now)
    bus call $SD $SD_PATH $SD_MGR StopUnit ss hello.service replace >/dev/null
    el=$(wait_state hello.service inactive 60)
    log "StopUnit -> inactive after $el; podman ps now: $(tb_exec podman ps -q | wc -l) running"
    bus call $SD $SD_PATH $SD_MGR StartUnit ss hello.service replace >/dev/null
    wait_state hello.service active 60 >/dev/null
    log "DEMO OK (hello.service left running)"
}

demo_user() {   # rootless: user manager + ~/.config/containers/systemd, driven over the *user* bus (inside)
    need_root
    is_up || die "testbed not up (run: $0 up)"
    local user=${LEGER_TESTBED_USER:-leger} uid t0 el
    tb_exec id -u "$user" >/dev/null 2>&1 || tb_exec useradd -m -s /bin/sh "$user"
    uid=$(tb_exec id -u "$user")
    # loginctl must run as a real in-container process (from nsenter it fails with
    # "Could not enable linger: Protocol driver not attached"), hence systemd-run.
    tb_exec systemd-run --wait --pipe --quiet loginctl enable-linger "$user"
    t0=$(now)
    local i; for i in $(seq 1 100); do tb_exec test -S "/run/user/$uid/bus" && break; sleep 0.1; done
    tb_exec systemctl is-active --quiet "user@$uid.service" || die "user@$uid.service not active"
    log "user manager user@$uid.service up ($(since "$t0"))"
    local U=(runuser -u "$user" -- env XDG_RUNTIME_DIR=/run/user/$uid HOME=/home/$user)
    tb_exec "${U[@]}" podman import --quiet --change 'CMD ["/bin/sh"]' /opt/leger-images/busybox-rootfs.tar localhost/busybox:latest >/dev/null
    tb_exec "${U[@]}" mkdir -p "/home/$user/.config/containers/systemd"
    printf '%s\n' '[Container]' 'Image=localhost/busybox:latest' 'Network=none' \
        "Exec=/bin/sh -c 'trap \"exit 0\" TERM; while :; do echo hello rootless; sleep 1 & wait \$!; done'" \
        | tb_exec "${U[@]}" tee "/home/$user/.config/containers/systemd/uhello.container" >/dev/null
    tb_exec "${U[@]}" env QUADLET_UNIT_DIRS="/home/$user/.config/containers/systemd" /usr/libexec/podman/quadlet -user -dryrun -no-kmsg-log >/dev/null 2>&1 \
        || die "quadlet -user -dryrun failed"
    local B=("${U[@]}" busctl --user)
    tb_exec "${B[@]}" call $SD $SD_PATH $SD_MGR Reload
    t0=$(now)
    tb_exec "${B[@]}" call $SD $SD_PATH $SD_MGR StartUnit ss uhello.service replace >/dev/null
    for i in $(seq 1 300); do
        el=$(tb_exec "${U[@]}" systemctl --user show -P ActiveState uhello.service)
        [ "$el" = active ] && break; sleep 0.1
    done
    [ "$el" = active ] || die "uhello.service ActiveState=$el"
    log "rootless uhello.service active after $(since "$t0")"
    log "podman ps ($user): $(tb_exec "${U[@]}" podman ps --format '{{.Names}} {{.Status}}')"
    sleep 2
    local out; out=$(tb_exec "${U[@]}" journalctl --user -u uhello.service --no-pager 2>/dev/null || tb_exec journalctl --user-unit uhello.service --no-pager)
    grep -q 'hello rootless' <<<"$out" || out=$(tb_exec journalctl _UID="$uid" --no-pager)
    tail -n 2 <<<"$out" >&2
    grep -q 'hello rootless' <<<"$out" || die "no rootless container output in journal"
    log "DEMO-USER OK"
}

# ---------------------------------------------------------------- teardown
down_quiet() {
    local ns
    if ns=$(nspawn_pid); then
        log "stopping $NAME (SIGTERM -> clean poweroff), nspawn pid $ns"
        kill -TERM "$ns"
        local i
        for i in $(seq 1 600); do kill -0 "$ns" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$ns" 2>/dev/null; then
            log "still running after 60s, terminating"; kill -TERM "$ns"; sleep 5
            kill -0 "$ns" 2>/dev/null && kill -KILL "$ns"
        fi
    fi
    # unmount everything we mounted under $RUN (overlay root, tmpfs)
    local m
    for m in $(findmnt -rn -o TARGET | grep -F "$RUN" | sort -r); do umount "$m" 2>/dev/null || umount -l "$m"; done
    local d
    for d in $(cg_dirs); do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    rm -rf "/run/systemd/nspawn/propagate/$NAME"
    rm -rf "$RUN"
}

down() {
    need_root
    down_quiet
    if [ "${1:-}" = --purge ]; then log "purging cache $DIR"; rm -rf "$DIR"; fi
    log "down."
}

status() {
    if is_up; then
        echo "up: leader pid $(leader_pid), SystemState=$(bus get-property $SD $SD_PATH $SD_MGR SystemState | awk '{print $2}')"
        saved_env
    else
        echo "down"; return 1
    fi
}

# Install host packages and build the cached rootfs, without booting: lets a test run
# pay for the first build once, before tests boot machines in parallel.
prepare() {
    need_root
    mkdir -p "$DIR"
    exec 9>"$DIR/.lock"; flock 9
    host_prereqs
    build_base
    flock -u 9; exec 9>&-
}

cmd=${1:-run}; shift || true
case $cmd in
    prepare) prepare ;;
    run)    t=$(now); up; demo; log "total $(since "$t")" ;;
    up)     up ;;
    demo)   demo ;;
    demo-user) demo_user ;;
    logs)   tb_exec journalctl -b --no-pager "$@" ;;
    env)    saved_env ;;
    exec)   [ "${1:-}" = -- ] && shift; tb_exec "$@" ;;
    status) status ;;
    down)   down "$@" ;;
    *) sed -n '2,/^set -euo/p' "$0" | grep '^#'; exit 2 ;;
esac
