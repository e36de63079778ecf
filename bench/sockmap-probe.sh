#!/usr/bin/env bash
# bench/sockmap-probe.sh: why plain hops use splice(2) and not an eBPF sockmap redirect.
# Builds bench/sockmap-probe/probe.c (gcc, Linux UAPI headers) and runs it as root on
# loopback: a sockmap-joined hop with a receiver that never reads. Not part of npm test
# (it deliberately lets the kernel queue up to 1 GiB).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc -O2 -Wall -o "$tmp/probe" "$here/sockmap-probe/probe.c"
"$tmp/probe"
