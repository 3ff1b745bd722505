#!/usr/bin/env bash
# The main job, shown end to end: legerd converging examples/apps from a git
# repository on a real systemd + podman machine (the test bed), then converging a
# change pushed to that repository.
#
#   contrib/demo.sh               # as root; or: sudo contrib/demo.sh
#   contrib/demo.sh --keep        # leave it running; `contrib/testbed/testbed.sh down` later
#
# Needs root (systemd-nspawn). Under sudo it uses your ~/.cargo/bin toolchain. The first
# run builds the test bed (about 1-2 minutes) and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0
case "${1:-}" in
    "") ;;
    --keep) keep=1 ;;
    *) echo "demo.sh: unknown argument '$1': the only option is --keep" >&2; exit 2 ;;
esac
# shellcheck source=contrib/lib/common.sh
. contrib/lib/common.sh
leger_need_root "$0"
leger_find_cargo

export LEGER_TESTBED_NAME=${LEGER_TESTBED_NAME:-leger-demo}
TB=contrib/testbed/testbed.sh
say() { leger_say "$@"; }

leger_testbed_notice
say "building legerd and legerctl"
cargo build --bins --locked
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

share=$(mktemp -d /var/tmp/leger-demo-share.XXXXXX)
cleanup() {
    if [ "$keep" = 0 ]; then "$TB" down >/dev/null 2>&1 || true; rm -rf "$share"; fi
    leger_give_back_target
}
trap cleanup EXIT

say "booting a test bed machine ($LEGER_TESTBED_NAME): systemd 257, podman 5.4"
"$TB" down >/dev/null 2>&1 || true
LEGER_TESTBED_SHARE_DIR=$share LEGER_TESTBED_AGENT_DIR=$target/debug "$TB" up
# shellcheck disable=SC1090
source "/var/tmp/leger-testbed/run-$LEGER_TESTBED_NAME/env"
x() { "$TB" exec "$@"; }

say "a git repository with examples/apps (served to the machine at /srv/leger/fleet.git)"
git init -q -b main "$share/work"
cp -r examples/apps "$share/work/apps"
g() { git -C "$share/work" -c user.name=demo -c user.email=demo@leger.invalid "$@"; }
g add -A && g commit -qm "hello and counter apps"
git clone -q --bare "$share/work" "$share/fleet.git"
g remote add origin "$share/fleet.git"
find "$share/work/apps" -type f | sed "s|$share/work/||"

say "legerctl set-desired git /srv/leger/fleet.git --path apps"
x /opt/leger/legerctl set-desired git /srv/leger/fleet.git --path apps --interval 30s

say "starting legerd as a systemd service (Type=notify: ready after its first pass)"
sed 's|ExecStart=/usr/bin/legerd|ExecStart=/opt/leger/legerd|' contrib/systemd/legerd.service \
    > "$LEGER_TESTBED_ROOT/etc/systemd/system/legerd.service"
x systemctl daemon-reload
x systemctl start legerd.service
x systemctl status legerd.service --no-pager --lines=0 || true

say "legerctl status"
x /opt/leger/legerctl status
say "podman ps"
x podman ps --format 'table {{.Names}}\t{{.Status}}\t{{.Image}}'
say "installed files (README.md stayed in git)"
find "$LEGER_TESTBED_QUADLET_DIR" -type f | sed "s|$LEGER_TESTBED_QUADLET_DIR/|/etc/containers/systemd/|"

say "push a change: GREETING=leger; legerctl reconcile"
echo "GREETING=leger" > "$share/work/apps/hello/hello.env"
g commit -qam "greet leger" && g push -q origin main
x /opt/leger/legerctl reconcile
rev=$(g rev-parse HEAD)
for _ in $(seq 1 300); do
    x /opt/leger/legerctl status --json | grep -q "\"appliedRevision\":\"$rev\"" && break
    sleep 0.2
done
x /opt/leger/legerctl history -n 5
for _ in $(seq 1 100); do x journalctl -u hello.service -o cat --no-pager | grep -q "hello, leger" && break; sleep 0.2; done
say "hello.service now says:"
x journalctl -u hello.service -o cat --no-pager | grep "^hello, " | tail -n 2
say "the journal: revision applied (MESSAGE_ID=fc2e5769da014e6c827e73b17a4eb9e8)"
x journalctl MESSAGE_ID=fc2e5769da014e6c827e73b17a4eb9e8 -o cat --no-pager
if [ "$keep" = 1 ]; then
    say "left running: $TB exec /opt/leger/legerctl status   (LEGER_TESTBED_NAME=$LEGER_TESTBED_NAME)"
fi
