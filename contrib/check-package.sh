#!/usr/bin/env bash
# Checks a built package's file list (CI runs it on both packages):
#   contrib/check-package.sh target/package/leger_0.1.0-1_amd64.deb
#   contrib/check-package.sh target/package/leger-0.1.0-1.x86_64.rpm
# Every file leger must ship is there: binaries, both units, sysusers, tmpfiles, the
# default config, every man page leger-docgen generated (one per subcommand) plus the
# hand-written ones, and the completions in the distribution's standard places.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] && [ -f "$1" ] || { echo "usage: $0 PACKAGE.deb|PACKAGE.rpm (an existing file)" >&2; exit 2; }
pkg=$1
gen=target/package/gen
[ -d "$gen/man" ] || { echo "check-package.sh: $gen is missing: run contrib/package.sh first" >&2; exit 2; }
case "$pkg" in
    *.deb) list=$(dpkg-deb -c "$pkg" | awk '{print $6}' | sed 's|^\./|/|')
           zsh=/usr/share/zsh/vendor-completions ;;
    *.rpm) list=$(rpm -qlp "$pkg" 2>/dev/null)
           zsh=/usr/share/zsh/site-functions ;;
    *) echo "check-package.sh: $pkg is neither a .deb nor an .rpm" >&2; exit 2 ;;
esac
expected=(
    /usr/bin/legerd /usr/bin/legerctl
    /usr/lib/systemd/system/legerd.service /usr/lib/systemd/user/legerd.service
    /usr/lib/sysusers.d/leger.conf /usr/lib/tmpfiles.d/leger.conf
    /usr/lib/leger/config.d/10-defaults.toml
    /usr/share/bash-completion/completions/legerctl /usr/share/bash-completion/completions/legerd
    "$zsh/_legerctl" "$zsh/_legerd"
    /usr/share/fish/vendor_completions.d/legerctl.fish /usr/share/fish/vendor_completions.d/legerd.fish
)
while IFS= read -r page; do
    expected+=("/usr/share/man/${page#"$gen"/man/}")
done < <(find "$gen/man" -type f | sort)
missing=0
for f in "${expected[@]}"; do
    grep -qxF "$f" <<<"$list" || { echo "check-package.sh: $pkg lacks $f" >&2; missing=$((missing + 1)); }
done
grep -qE '^/usr/share/(licenses|doc)/leger[^/]*/(LICENSE|copyright)$' <<<"$list" \
    || { echo "check-package.sh: $pkg has no license file" >&2; missing=$((missing + 1)); }
# A git source over ssh runs `ssh`: the package recommends the client.
case "$pkg" in
    *.deb) weak=$(dpkg-deb -f "$pkg" Recommends); ssh_client=openssh-client ;;
    *.rpm) weak=$(rpm -qp --recommends "$pkg" 2>/dev/null); ssh_client=openssh-clients ;;
esac
grep -qw "$ssh_client" <<<"$weak" \
    || { echo "check-package.sh: $pkg does not recommend $ssh_client" >&2; missing=$((missing + 1)); }
[ "$missing" = 0 ] || exit 1
echo "check-package.sh: $pkg has all ${#expected[@]} expected files"
