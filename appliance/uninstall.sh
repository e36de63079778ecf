#!/usr/bin/env bash
# Removes what appliance/install.sh installed. Keeps /etc/beckon, the state directories and
# the beckon user unless --purge (as apt's remove vs purge). Debian packages stay: other
# software may use strongSwan or nftables.
#
# usage: appliance/uninstall.sh [--root DIR] [--purge] [ROLE]   (no ROLE: every role)
set -euo pipefail
usage () { echo "usage: uninstall.sh [--root DIR] [--purge] [relay|gateway|agent|client]" >&2; exit 2; }
ROOT=''
purge=no
roles=()
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --purge) purge=yes; shift ;;
    relay|gateway|agent|client) roles+=("$1"); shift ;;
    *) usage ;;
  esac
done
[ ${#roles[@]} -gt 0 ] || roles=(relay gateway agent client)
if [ -n "$ROOT" ]; then ROOT=$(cd "$ROOT" && pwd); fi
live () { [ -z "$ROOT" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; }

# Roles still installed after this run keep the shared pieces (code, firewall, charon snippet).
remaining=()
for r in relay gateway agent client; do
  [[ " ${roles[*]} " == *" $r "* ]] && continue
  { [ -e "$ROOT/etc/systemd/system/beckon-$r.service" ] || [ -e "$ROOT/var/lib/beckon-install/plan-$r" ] || [ -e "$ROOT/var/lib/beckon-install/role-$r" ]; } && remaining+=("$r")
done

for r in "${roles[@]}"; do
  unit=$ROOT/etc/systemd/system/beckon-$r.service
  if [ -e "$unit" ]; then
    live && systemctl disable --now "beckon-$r.service" || true
    rm -f "$unit"
    echo "uninstall.sh: removed beckon-$r.service"
  fi
  rm -f "$ROOT/var/lib/beckon-install/plan-$r" "$ROOT/var/lib/beckon-install/role-$r"
  if [ "$purge" = yes ]; then rm -rf "$ROOT/etc/beckon/$r.yaml" "$ROOT/etc/default/beckon-$r" "$ROOT/var/lib/beckon/$r"; fi
done

if [ ${#remaining[@]} -eq 0 ]; then
  if [ -e "$ROOT/etc/systemd/system/beckon-firewall.service" ]; then
    live && systemctl disable --now beckon-firewall.service || true
    rm -f "$ROOT/etc/systemd/system/beckon-firewall.service"
  fi
  rm -f "$ROOT/etc/beckon/nftables.nft" "$ROOT/etc/strongswan.d/beckon.conf" "$ROOT/usr/local/bin/beckon"
  live && systemctl try-restart strongswan.service || true
  rm -rf "$ROOT/opt/beckon" "$ROOT/var/lib/beckon-install"
  if [ "$purge" = yes ]; then
    rm -rf "$ROOT/etc/beckon" "$ROOT/var/lib/beckon"
    [ -z "$ROOT" ] && getent passwd beckon >/dev/null && userdel beckon
  fi
  live && systemctl daemon-reload || true
  # A staged tree loses the directories install.sh made for it.
  [ -n "$ROOT" ] && find "$ROOT" -mindepth 1 -depth -type d -empty -delete
  echo "uninstall.sh: Beckon removed${ROOT:+ from $ROOT}"
else
  live && systemctl daemon-reload || true
  echo "uninstall.sh: ${roles[*]} removed; still installed: ${remaining[*]}"
fi
