#!/usr/bin/env bash
# The VM tier (opt-in: `npm run test:vm`, not in CI): the appliance booted, not just written.
#
#   host                                         guest (Debian 12, systemd as PID 1, qemu TCG)
#   npm run build                                beckon-vm-test.service (after multi-user):
#   mmdebstrap bookworm -> rootfs dir              boot 1: install.sh gateway, install.sh agent,
#   + node, the checkout, /opt/beckon (built)              configs filled, doctor, reboot
#   mke2fs -d rootfs -> disk.raw                   boot 2: units up and staying up, VICI as beckon,
#   qemu -accel tcg -kernel/-initrd from rootfs            restart after SIGKILL, kernel-ESP session
#   <- serial console: "BECKON-VM …" lines          prints RESULT, powers off
#
# Needs root and Debian's mmdebstrap, qemu-system-x86 (+ seabios), e2fsprogs; fetches only
# from the Debian archive (BECKON_VM_MIRROR). The guest has no network card (-nic none).
# Bounded: BECKON_VM_TIMEOUT seconds (default 1800) for the whole run; qemu is killed, any
# mount left under the work directory unmounted and the directory removed on every exit.
#
# Why /opt/beckon is pre-built: install.sh builds the code with `npm ci && tsc`, which needs
# the npm registry (the guest is offline) and, for better-sqlite3 without a prebuilt binary,
# a C toolchain; under TCG that alone would take many minutes. So the image carries the
# host's build in /opt/beckon with the source stamp install.sh computes, and install.sh takes
# its "code unchanged" path; every other step of it runs for real inside the guest.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
mirror=${BECKON_VM_MIRROR:-http://deb.debian.org/debian}
limit=${BECKON_VM_TIMEOUT:-1800}
start=$(date +%s)
say () { echo "vm: $(( $(date +%s) - start ))s: $*"; }

[ "$(id -u)" = 0 ] || { echo "vm: needs root (mmdebstrap, chroot)" >&2; exit 2; }
for t in mmdebstrap:mmdebstrap qemu-system-x86_64:qemu-system-x86 mke2fs:e2fsprogs node:nodejs; do
  command -v "${t%%:*}" >/dev/null || { echo "vm: ${t%%:*} missing: apt-get install --no-install-recommends ${t#*:}" >&2; exit 2; }
done
[ -e /usr/share/seabios/bios-256k.bin ] || { echo "vm: qemu's BIOS missing: apt-get install --no-install-recommends seabios" >&2; exit 2; }

work=$(mktemp -d /var/tmp/beckon-vm.XXXXXX)
child=''     # the long step running now (mmdebstrap, mke2fs, qemu)
tpid=''
watchdog=''
cleanup () {
  local rc=$?
  trap - EXIT INT TERM
  set +e   # every step below must run, whether or not the one before found anything to do
  [ -n "$watchdog" ] && kill "$watchdog" 2>/dev/null
  [ -n "$tpid" ] && kill "$tpid" 2>/dev/null
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    # mmdebstrap unmounts its chroot's /proc, /sys, /dev on TERM; qemu just dies.
    kill -TERM "$child" 2>/dev/null
    for _ in $(seq 20); do kill -0 "$child" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$child" 2>/dev/null
    wait "$child" 2>/dev/null
  fi
  awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n 1 umount -l 2>/dev/null || true
  rm -rf --one-file-system "$work"
  say "removed $work (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Bash runs a trap only once the foreground command returns, so long steps run in the
# background and are waited for: the deadline interrupts the wait, cleanup kills the step.
step () { "$@" & child=$!; wait "$child"; local rc=$?; child=''; return "$rc"; }
( trap 'kill "$s" 2>/dev/null; exit 0' TERM; sleep "$limit" & s=$!; wait "$s"; echo "vm: timeout after ${limit}s" >&2; kill -TERM $$ ) &
watchdog=$!

# ---- build on the host ------------------------------------------------------------------
say "npm run build"
(cd "$repo" && npm run build --silent)

# ---- rootfs ---------------------------------------------------------------------------------
# The packages install.sh would apt-get for gateway + agent are preinstalled (the guest is
# offline); install.sh finds them and skips apt-get. The rest: a bootable systemd system.
pkgs=systemd,systemd-sysv,udev,kmod,linux-image-amd64,initramfs-tools,zstd,procps,iputils-ping
pkgs+=,ca-certificates,iproute2,nftables
pkgs+=,strongswan-charon,charon-systemd,strongswan-swanctl,strongswan-pki,libstrongswan-standard-plugins,libcharon-extra-plugins
root=$work/root
t=$(date +%s)
if [ -n "${BECKON_VM_ROOTFS:-}" ]; then
  # Iterating on guest.sh: a copy of a rootfs an earlier mmdebstrap made (same --include).
  say "rootfs copied from $BECKON_VM_ROOTFS (BECKON_VM_ROOTFS; no mmdebstrap)"
  step cp -a "$BECKON_VM_ROOTFS" "$root"
else
  say "mmdebstrap bookworm ($mirror)"
  step mmdebstrap --quiet --variant=minbase --include="$pkgs" bookworm "$root" "$mirror"
  say "mmdebstrap done in $(( $(date +%s) - t ))s"
fi

echo beckon-vm >"$root/etc/hostname"
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$root/etc/fstab"
# The console is the test's output channel: no login prompt on it; no timers reaching for apt.
for u in serial-getty@ttyS0.service apt-daily.timer apt-daily-upgrade.timer; do ln -sf /dev/null "$root/etc/systemd/system/$u"; done

# Node ≥ 20 (Debian 12 ships 18): the host's binary, built for the same release.
node=$(readlink -f "$(command -v node)")
install -m 0755 "$node" "$root/usr/local/bin/node"
chroot "$root" /usr/local/bin/node -e 'if (+process.versions.node.split(".")[0] < 20) process.exit(1)' ||
  { echo "vm: the host's node ($node) does not run in bookworm or is older than 20" >&2; exit 1; }

# The checkout install.sh installs from, and /opt/beckon as its build step would leave it.
mkdir -p "$root/root/beckon" "$root/opt/beckon"
(cd "$repo" && cp -R package.json package-lock.json tsconfig.json src appliance systemd docs "$root/root/beckon/")
(cd "$repo" && cp -R package.json package-lock.json tsconfig.json src dist node_modules "$root/opt/beckon/")
(cd "$root/opt/beckon" && npm prune --omit=dev --offline --no-audit --no-fund --silent)
# The same stamp install.sh computes (keep in step with appliance/install.sh).
(cd "$root/root/beckon" && find package.json package-lock.json tsconfig.json src -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1) >"$root/opt/beckon/.source-sha256"

install -m 0755 "$here/guest.sh" "$root/usr/local/sbin/beckon-vm-test"
cat >"$root/etc/systemd/system/beckon-vm-test.service" <<'EOF'
[Unit]
Description=Beckon VM tier (test/vm/guest.sh): report on the serial console, then power off
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/beckon-vm-test
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TimeoutStartSec=900

[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/beckon-vm-test.service "$root/etc/systemd/system/multi-user.target.wants/beckon-vm-test.service"

kernel=$(ls "$root"/boot/vmlinuz-* | head -n 1)
initrd=$(ls "$root"/boot/initrd.img-* | head -n 1)
cp "$kernel" "$work/vmlinuz"
cp "$initrd" "$work/initrd"

say "disk image ($(du -sm "$root" | cut -f1) MB of files)"
t=$(date +%s)
step mke2fs -q -t ext4 -L beckonvm -d "$root" "$work/disk.raw" 3G
rm -rf --one-file-system "$root"
say "image done in $(( $(date +%s) - t ))s"

# ---- boot -----------------------------------------------------------------------------------
console=$work/console.log
: >"$console"
say "qemu -accel tcg (KVM does not boot here), 2 vCPUs, 2 GiB"
t=$(date +%s)
qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m 2048 \
  -kernel "$work/vmlinuz" -initrd "$work/initrd" \
  -append 'root=/dev/vda rw console=ttyS0 quiet loglevel=3 systemd.show_status=0' \
  -drive "file=$work/disk.raw,format=raw,if=virtio" \
  -nic none -display none -monitor none -serial "file:$console" -no-user-config &
child=$!
# Stream the guest's report as it comes.
tail -n +1 -f --pid="$child" "$console" | grep --line-buffered -a '^BECKON-VM' &
tpid=$!
wait "$child" || true
child=''
wait "$tpid" 2>/dev/null || true
tpid=''
say "qemu exited after $(( $(date +%s) - t ))s (two boots)"

tr -d '\r' <"$console" >"$console.txt"
if grep -q '^BECKON-VM RESULT PASS (phase 2' "$console.txt" && ! grep -q '^BECKON-VM RESULT FAIL' "$console.txt"; then
  say "PASS"
  exit 0
fi
echo "vm: FAIL; the console's last 80 lines:" >&2
tail -n 80 "$console.txt" >&2
exit 1
