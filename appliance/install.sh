#!/usr/bin/env bash
# Installs Beckon on a Debian 12 host for one role: relay | gateway | agent | client.
# usage: appliance/install.sh ROLE [SOURCE_DIR]
set -euo pipefail
role=${1:?usage: install.sh relay|gateway|agent|client [source-dir]}
src=${2:-$(cd "$(dirname "$0")/.." && pwd)}
case "$role" in relay|gateway|agent|client) ;; *) echo "install.sh: unknown role '$role'" >&2; exit 2 ;; esac

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins \
  iproute2 nftables ca-certificates

if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "install.sh: Node.js >= 20 is required (Debian 12 ships 18); install it first" >&2
  exit 1
fi

install -d -m 0755 /opt/beckon /etc/beckon
cp -a "$src"/package.json "$src"/package-lock.json "$src"/tsconfig.json "$src"/src /opt/beckon/
(cd /opt/beckon && npm ci --no-audit --no-fund && npx tsc -p tsconfig.json && npm prune --omit=dev)
ln -sf /opt/beckon/dist/cli/main.js /usr/local/bin/beckon
chmod +x /opt/beckon/dist/cli/main.js
cp -a "$src"/docs /opt/beckon/

# A system user for the daemons; the unit grants only the capabilities its role needs.
getent passwd beckon >/dev/null || useradd --system --home /var/lib/beckon --shell /usr/sbin/nologin beckon
if [ "$role" != client ]; then
  [ -f "/etc/beckon/$role.yaml" ] || install -m 0640 -g beckon "$src/appliance/defaults/$role.yaml" "/etc/beckon/$role.yaml"
  install -m 0644 "$src/systemd/beckon-$role.service" /etc/systemd/system/
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable "beckon-$role.service"
    echo "edit /etc/beckon/$role.yaml (REPLACE markers), then: systemctl start beckon-$role"
  fi
fi
echo "beckon installed for role $role: $(beckon --version)"
