#!/usr/bin/env bash
# Installs Beckon on a Debian 12 host for one role: relay | gateway | agent | client.
#
# usage: appliance/install.sh [--root DIR] [--source DIR] ROLE
#
#   --root DIR    staged install: every file goes under DIR and nothing on the live system
#                 is touched (no apt-get, useradd, npm, systemctl, chgrp); what would run
#                 is written to DIR/var/lib/beckon-install/plan-ROLE instead.
#   --source DIR  the Beckon checkout (default: this script's parent directory).
#
# Environment: BECKON_KERNEL_ESP=yes|no overrides kernel ESP detection;
#              BECKON_CARRIER_NET (agent) the carrier network allowed to reach the agent port.
#
# Idempotent: files are rewritten only when their content differs, packages installed only
# when missing, the code rebuilt only when its source hash changed, and an existing
# /etc/beckon/ROLE.yaml is never overwritten.
set -euo pipefail

usage () { echo "usage: install.sh [--root DIR] [--source DIR] relay|gateway|agent|client" >&2; exit 2; }
ROOT=''
src=$(cd "$(dirname "$0")/.." && pwd)
role=''
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --source) src=${2:?--source needs a directory}; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "install.sh: unknown option $1" >&2; usage ;;
    *) [ -z "$role" ] || usage; role=$1; shift ;;
  esac
done
case "$role" in relay|gateway|agent|client) ;; *) echo "install.sh: unknown role '$role'" >&2; usage ;; esac
if [ -n "$ROOT" ]; then mkdir -p "$ROOT"; ROOT=$(cd "$ROOT" && pwd); fi
src=$(cd "$src" && pwd)
staged () { [ -n "$ROOT" ]; }

plan=()
# Live: run the command. Staged: record it (the plan is the only trace it leaves).
run () {
  if staged; then plan+=("$*"); else "$@"; fi
}

changed=0
# put_file SRC DST MODE: copy only when the content or mode differs.
put_file () {
  local from=$1 to=$ROOT$2 mode=$3
  mkdir -p "$(dirname "$to")"
  if [ -f "$to" ] && cmp -s "$from" "$to" && [ "$(stat -c %a "$to")" = "${mode#0}" ]; then return 0; fi
  install -m "$mode" "$from" "$to"
  changed=$((changed + 1))
  echo "install.sh: wrote $2"
}
# put_text DST MODE < content
put_text () {
  local tmp
  tmp=$(mktemp)
  cat >"$tmp"
  put_file "$tmp" "$1" "$2"
  rm -f "$tmp"
}

# ---- packages ---------------------------------------------------------------------------
# g++, make, python3: node-gyp builds native/splice.c (the in-kernel splice of plain hops)
# at npm ci; without them the install still succeeds and plain hops use the JS loop.
packages=(ca-certificates iproute2 nftables g++ make python3)
case "$role" in
  agent|client)
    # charon-systemd: charon as strongswan.service, configured by strongswan.conf + VICI only.
    # libstrongswan-standard-plugins: the openssl plugin (only *recommended* by charon).
    # libcharon-extra-plugins: kernel-libipsec, for kernels without ESP.
    packages+=(strongswan-charon charon-systemd strongswan-swanctl strongswan-pki
      libstrongswan-standard-plugins libcharon-extra-plugins) ;;
esac
if staged; then
  run apt-get install -y --no-install-recommends "${packages[@]}"
else
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
    echo "install.sh: Node.js >= 20 is required (Debian 12 ships 18); install it first" >&2
    exit 1
  fi
fi

# ---- service user ---------------------------------------------------------------------
if staged || ! getent passwd beckon >/dev/null; then
  run useradd --system --user-group --home-dir /var/lib/beckon --shell /usr/sbin/nologin beckon
fi

# ---- the code under /opt/beckon ----------------------------------------------------------
# Rebuilt only when the source changed: the stamp is a hash of everything the build reads.
stamp=$(cd "$src" && find package.json package-lock.json tsconfig.json binding.gyp native src -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
opt=$ROOT/opt/beckon
if [ "$(cat "$opt/.source-sha256" 2>/dev/null)" != "$stamp" ]; then
  mkdir -p "$opt"
  rm -rf "$opt/src" "$opt/dist" "$opt/native" "$opt/build"
  cp -R "$src/package.json" "$src/package-lock.json" "$src/tsconfig.json" "$src/binding.gyp" "$src/native" "$src/src" "$opt/"
  if staged; then
    # A staged tree carries the build the checkout already has (npm test builds dist/).
    [ -d "$src/dist" ] && cp -R "$src/dist" "$opt/dist"
    [ -d "$src/build/Release" ] && mkdir -p "$opt/build" && cp -R "$src/build/Release" "$opt/build/Release"
  else
    (cd "$opt" && npm ci --no-audit --no-fund && npx tsc -p tsconfig.json && npm prune --omit=dev --no-audit --no-fund)
  fi
  echo "$stamp" >"$opt/.source-sha256"
  changed=$((changed + 1))
  echo "install.sh: wrote /opt/beckon ($stamp)"
fi
staged && plan+=("(cd /opt/beckon && npm ci && npx tsc -p tsconfig.json && npm prune --omit=dev)")
[ -f "$opt/dist/cli/main.js" ] && chmod 0755 "$opt/dist/cli/main.js"
for d in "$src"/docs/*.md; do put_file "$d" "/opt/beckon/docs/$(basename "$d")" 0644; done
mkdir -p "$ROOT/usr/local/bin"
if [ "$(readlink "$ROOT/usr/local/bin/beckon" 2>/dev/null)" != /opt/beckon/dist/cli/main.js ]; then
  ln -sfn /opt/beckon/dist/cli/main.js "$ROOT/usr/local/bin/beckon"
  changed=$((changed + 1))
fi

# ---- configuration -----------------------------------------------------------------------
mkdir -p "$ROOT/etc/beckon"
chmod 0750 "$ROOT/etc/beckon"
conf=/etc/beckon/$role.yaml
if [ ! -e "$ROOT$conf" ]; then
  put_file "$src/appliance/defaults/$role.yaml" "$conf" 0640
  echo "install.sh: edit $conf (REPLACE markers), then check it: beckon doctor --role $role"
fi
if staged; then run chgrp -R beckon /etc/beckon; else chgrp beckon /etc/beckon "$ROOT$conf"; fi

# ---- strongSwan (the roles that drive a local charon over VICI) ------------------------
# Kernel ESP, most to least direct: loaded module, kernel config, module tree, a live probe
# (an ESP SA in a throwaway namespace; "Requested type not found" = no ESP). Unknown → libipsec.
kernel_esp () {
  local rel cfg
  rel=$(uname -r)
  grep -q '^esp4 ' /proc/modules 2>/dev/null && { echo yes; return; }
  for cfg in /proc/config.gz "/boot/config-$rel"; do
    [ -r "$cfg" ] || continue
    case "$(zcat -f "$cfg" | grep -E '^(# )?CONFIG_INET_ESP[= ]')" in
      CONFIG_INET_ESP=y) echo yes; return ;;
      CONFIG_INET_ESP=m) ls /lib/modules/"$rel"/kernel/net/ipv4/esp4.ko* >/dev/null 2>&1 && echo yes || echo no; return ;;
      '# CONFIG_INET_ESP is not set') echo no; return ;;
    esac
  done
  grep -q '/esp4\.ko$' "/lib/modules/$rel/modules.builtin" 2>/dev/null && { echo yes; return; }
  ls /lib/modules/"$rel"/kernel/net/ipv4/esp4.ko* >/dev/null 2>&1 && { echo yes; return; }
  if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && command -v ip >/dev/null; then
    local k=0x$(printf '11%.0s' $(seq 16))
    if unshare -n ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 enc 'cbc(aes)' "$k" auth-trunc 'hmac(sha256)' "$k$(printf '11%.0s' $(seq 16))" 128 2>/dev/null; then
      echo yes; return
    fi
    echo no; return
  fi
  echo unknown
}
if [ "$role" = agent ] || [ "$role" = client ]; then
  esp=${BECKON_KERNEL_ESP:-$(kernel_esp)}
  if [ "$esp" = yes ]; then
    kernel="    # This kernel has ESP (detected at install): kernel-netlink does ESP, no TUN needed."
  else
    kernel="    # No kernel ESP (detected at install: $esp): userspace ESP on a TUN device.
    # Debian ships kernel-libipsec.conf with load = no; this file is included after it.
    kernel-libipsec {
      load = yes
    }"
  fi
  # A top-level include (strongswan.d/*.conf): strongswan.d/charon/*.conf is included
  # *inside* charon.plugins, where `group` would not be charon's.
  put_text /etc/strongswan.d/beckon.conf 0644 <<EOF
# Written by appliance/install.sh ($role); rerun it rather than editing (or copy to another name).
charon {
  # charon creates its VICI socket 0770 and chowns it to its user and group after startup,
  # so the beckon service user (group beckon) may open it; uid stays root.
  group = beckon
  plugins {
    vici {
      socket = unix:///var/run/charon.vici
    }
$kernel
  }
}
EOF
fi

# ---- nftables: only the listening ports the role needs --------------------------------
case "$role" in
  relay) inbound='    tcp dport { 8443, 7001 } accept comment "CONNECT (TLS), dial-backs from gateways"
    tcp dport 8444 drop comment "management API: loopback only (accepted above via lo)"' ;;
  agent)
    port=$(sed -nE 's/^listen:[[:space:]]*"?[^"#[:space:]]*:([0-9]+).*/\1/p' "$ROOT$conf" | head -n 1)
    inbound="    ip saddr ${BECKON_CARRIER_NET:-203.0.113.0/24} tcp dport ${port:-7400} accept comment \"the gateway, from the carrier network only\"" ;;
  gateway|client) inbound='    # nothing: every connection this role makes is outbound' ;;
esac
# `icmpv6`, not `ipv6-icmp`: nft resolves the latter through /etc/protocols (package netbase),
# which minimal Debian images lack; booted in one (test/vm), the whole ruleset was refused
# with "Could not resolve protocol name" and the host kept no firewall. `icmpv6` is nft's
# own keyword for protocol 58.
put_text /etc/beckon/nftables.nft 0644 <<EOF
#!/usr/sbin/nft -f
# Written by appliance/install.sh ($role). Loaded by beckon-firewall.service.
# Its own table, replaced as a whole on reload; other tables are left alone.
table inet beckon {}
delete table inet beckon
table inet beckon {
  chain input {
    type filter hook input priority filter; policy drop;
    iif "lo" accept
    ct state established,related accept
    ct state invalid drop
    meta l4proto { icmp, icmpv6 } accept
    tcp dport 22 accept comment "ssh: operators (remove if managed otherwise)"
$inbound
  }
}
EOF
put_file "$src/systemd/beckon-firewall.service" /etc/systemd/system/beckon-firewall.service 0644

# ---- systemd ------------------------------------------------------------------------------
units=(beckon-firewall.service)
if [ "$role" != client ]; then
  put_file "$src/systemd/beckon-$role.service" "/etc/systemd/system/beckon-$role.service" 0644
  units+=("beckon-$role.service")
fi
[ "$role" = agent ] || [ "$role" = client ] && units+=(strongswan.service)
if staged; then
  run systemctl daemon-reload
  run systemctl enable "${units[@]}"
elif command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  [ "$changed" -eq 0 ] || systemctl daemon-reload
  systemctl enable --quiet "${units[@]}"
  [ "$role" = agent ] || [ "$role" = client ] && systemctl try-restart strongswan.service
  systemctl restart beckon-firewall.service
fi

# Which roles this host carries: uninstall.sh keeps shared pieces while one remains.
echo "$role" | put_text "/var/lib/beckon-install/role-$role" 0644
if staged; then
  printf '%s\n' "${plan[@]}" | put_text "/var/lib/beckon-install/plan-$role" 0644
  echo "install.sh: staged $role under $ROOT ($changed changes); would run: see var/lib/beckon-install/plan-$role"
else
  echo "install.sh: beckon installed for role $role ($changed changes): $(/usr/local/bin/beckon --version)"
fi
