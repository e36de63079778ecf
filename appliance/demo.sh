#!/usr/bin/env bash
# The first command on a fresh Debian 12 machine with Node >= 20: sets up what `beckon demo`
# needs, then runs it (the namespace lab, an SMS- and an e-mail-signalled IPsec session, the
# glucose log over the tunnel, the relay's capture; everything torn down at the end).
#
# usage: bash appliance/demo.sh [beckon demo options]      (as root)
#
# Idempotent: Debian packages are installed only when missing (the list is .ci/packages,
# shared with CI, without the lines tagged `tests`), `npm ci` runs only when node_modules is
# missing or older than package-lock.json, the build only when dist/ is older than src/.
set -euo pipefail
cd "$(dirname "$0")/.."

say () { echo "demo.sh: $*" >&2; }
if [ "$(id -u)" -ne 0 ]; then
  say "needs root (network namespaces, charon, tcpdump): sudo bash appliance/demo.sh"
  exit 1
fi
if ! command -v node >/dev/null || ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=10)?0:1)'; then
  say "needs Node.js >= 20.10 on PATH (found: $(node --version 2>/dev/null || echo none)); e.g. https://github.com/nodesource/distributions"
  exit 1
fi

mapfile -t wanted < <(sed -e 's/#.*//' .ci/packages | awk 'NF && $2 != "tests" { print $1 }')
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # slapd would ask for a directory to create; the lab runs its own slapd with its own data.
  echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
if [ ! -f dist/cli/main.js ] || [ -n "$(find src tsconfig.json package.json -newer dist/cli/main.js -print -quit)" ]; then
  say "building dist/"
  npm run --silent build
fi

exec node dist/cli/main.js demo "$@"
