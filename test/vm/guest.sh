#!/usr/bin/env bash
# The VM tier's guest half: baked into the image as /usr/local/sbin/beckon-vm-test and run by
# beckon-vm-test.service once multi-user.target is up. Every line it prints starts with
# "BECKON-VM " and goes to the serial console, where test/vm/run.sh reads it.
#
#   boot 1: appliance/install.sh gateway + agent (as an operator would), fill the REPLACE
#           markers, install.sh again (must change nothing), beckon doctor, then reboot —
#           so that boot 2 shows the enabled units coming up on their own.
#   boot 2: units active and staying up; VICI reachable as user beckon (and not as nobody);
#           charon on kernel-netlink (no kernel-libipsec, no ipsec0); SIGKILL of each role's
#           main PID brought back by Restart=; one IPsec session with kernel ESP:
#
#     root namespace (the installed charon,              netns vmpeer (a second charon,
#     strongswan.service, programmed over VICI            lab-style: private /run, own conf,
#     by the beckon user)                                 kernel-netlink only)
#       lo 198.51.100.1/32 (inner)                          lo 198.51.100.2/32 (inner)
#       vmesp0 192.0.2.1/24  ===== veth: IKE + ESP =====  vmesp1 192.0.2.2/24
#
#     `ip xfrm state` must show the ESP SAs and ping 198.51.100.1 -> .2 must pass through them.
#
# Ends with "BECKON-VM RESULT PASS|FAIL (n checks, m failed)" and powers off.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
state=/var/lib/beckon-vm-test
src=/root/beckon
mkdir -p "$state"
phase=$(cat "$state/phase" 2>/dev/null || echo 1)
checks=0
failed=0

say () { echo "BECKON-VM $*"; }
# Indents a command's output under its check so run.sh can print it as is.
show () { sed -u 's/^/BECKON-VM   | /'; }
check () {
  local name=$1; shift
  checks=$((checks + 1))
  if "$@"; then say "ok   $name"; else say "FAIL $name"; failed=$((failed + 1)); return 1; fi
}
finish () {
  say "RESULT $([ "$failed" -eq 0 ] && echo PASS || echo FAIL) (phase $phase: $checks checks, $failed failed)"
  if [ "$phase" = 2 ]; then
    say "done"; sync; systemctl poweroff --no-block; exit 0
  fi
}
# A unit's own words when a check on it fails.
journal () { journalctl -b -o short-monotonic --no-pager -n "${2:-15}" -u "$1" 2>&1 | cut -c1-240 | show; }
# wait_for SECONDS CMD…: polls CMD every 0.5 s (readiness, never a fixed sleep).
wait_for () {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}
up () { say "uptime $(cut -d' ' -f1 /proc/uptime)s: $*"; }

say "phase $phase: $(uname -r), $(systemctl --version | head -n 1), node $(node --version)"
# systemd-analyze time waits for the end of boot, which includes this unit: read the target.
say "multi-user.target reached at $(systemctl show -p ActiveEnterTimestampMonotonic --value multi-user.target | awk '{ printf "%.1f", $1 / 1e6 }')s after kernel start"

if [ "$phase" = 1 ]; then
  # ---- boot 1: install as an operator would ----------------------------------------------
  export BECKON_CARRIER_NET=203.0.113.0/24
  up "install.sh gateway"
  bash "$src/appliance/install.sh" gateway 2>&1 | show
  if ! check "install.sh gateway exits 0" test "${PIPESTATUS[0]}" = 0; then
    journal beckon-firewall.service
    # The same file outside the unit's sandbox: tells the sandbox from the ruleset.
    say "  nft -f /etc/beckon/nftables.nft outside the unit:"; nft -f /etc/beckon/nftables.nft 2>&1 | show
    say "  exit ${PIPESTATUS[0]}; modules: $(lsmod | awk '/^nf|^nft/ { printf "%s ", $1 }')"
    nft delete table inet beckon 2>/dev/null
  fi

  # The operator's edit: fill the REPLACE markers (keys made here, SMSC on loopback: nothing
  # listens there, so the gateway's SMPP bind keeps retrying with backoff, as without an SMSC).
  gw=$(beckon keygen x25519)
  relay_x=$(beckon keygen x25519)
  key () { node -e 'process.stdout.write(JSON.parse(process.argv[1])[process.argv[2]])' "$1" "$2"; }
  sed -i -e "s#url: ssmpp://smsc.example.net:3550#url: smpp://127.0.0.1:2775#" \
    -e "s#password: REPLACE#password: vm-secret#" \
    -e "s#x25519_private: REPLACE#x25519_private: $(key "$gw" privateKey)#" \
    -e "s#trusted_relays: \[REPLACE\]#trusted_relays: [$(key "$relay_x" publicKey)]#" /etc/beckon/gateway.yaml

  up "install.sh agent"
  bash "$src/appliance/install.sh" agent 2>&1 | show
  check "install.sh agent exits 0" test "${PIPESTATUS[0]}" = 0 || journal beckon-firewall.service
  relay_ed=$(beckon keygen ed25519)
  ag=$(beckon keygen x25519)
  sed -i -e "s#relay_keys: \[REPLACE\]#relay_keys: [$(key "$relay_ed" publicKey)]#" /etc/beckon/agent.yaml
  # IPsec mode: the agent opens charon's VICI socket at start, as user beckon.
  printf 'keys:\n  x25519_private: %s\nipsec:\n  vici: unix:///var/run/charon.vici\n' "$(key "$ag" privateKey)" >>/etc/beckon/agent.yaml
  ls -l /etc/beckon | show

  check "strongswan.d/beckon.conf chose kernel ESP (no kernel-libipsec block)" \
    bash -c '! grep -q kernel-libipsec /etc/strongswan.d/beckon.conf && grep -q "This kernel has ESP" /etc/strongswan.d/beckon.conf'

  out=$(bash "$src/appliance/install.sh" agent 2>&1); rc=$?
  echo "$out" | show
  check "install.sh agent again: 0 changes" bash -c '[ "$1" = 0 ] && grep -q "(0 changes)" <<<"$2"' _ "$rc" "$out"

  for role in gateway agent; do
    up "beckon doctor --role $role"
    beckon doctor --role "$role" 2>&1 | show
    check "doctor --role $role: no FAIL" test "${PIPESTATUS[0]}" = 0
  done

  finish
  echo 2 >"$state/phase"
  up "rebooting: the enabled units must come up on their own"
  sync
  systemctl reboot --no-block
  exit 0
fi

# ---- boot 2 ---------------------------------------------------------------------------------
units=(beckon-firewall.service strongswan.service beckon-gateway.service beckon-agent.service)
for u in "${units[@]}"; do
  check "$u active after boot" wait_for 60 systemctl is-active --quiet "$u" || journal "$u"
done
systemctl --no-pager --lines=0 status "${units[@]}" 2>&1 | grep -E '^[●×○] |Active:|Main PID:' | show
check "nft table inet beckon loaded" nft list table inet beckon
check "agent listens on 7400" wait_for 30 bash -c 'ss -Hltn "sport = :7400" | grep -q 7400'

declare -A pid0
for u in beckon-gateway.service beckon-agent.service; do pid0[$u]=$(systemctl show -p MainPID --value "$u"); done
# "Stay up" needs a span of time: 15 s in which neither role restarts.
up "watching gateway and agent for 15 s"
sleep 15
for u in beckon-gateway.service beckon-agent.service; do
  pid=$(systemctl show -p MainPID --value "$u"); n=$(systemctl show -p NRestarts --value "$u")
  say "  $u MainPID ${pid0[$u]} -> $pid, NRestarts $n"
  check "$u stayed up (same PID, no restart)" test "$pid" = "${pid0[$u]}" -a "$n" = 0 -a "$pid" != 0
done
journalctl -b -o cat --no-pager -u beckon-gateway.service -u beckon-agent.service | grep -E '"msg":"(gateway started|agent listening|smpp[^"]*)"' | head -n 4 | cut -c1-200 | show

# ---- VICI as beckon ---------------------------------------------------------------------
stat -c '%A %U:%G %n' /var/run/charon.vici | show
out=$(runuser -u beckon -- beckon vici version 2>&1); rc=$?
echo "runuser -u beckon -- beckon vici version -> $out" | show
check "VICI version as user beckon" test "$rc" = 0
out=$(runuser -u nobody -- beckon vici version 2>&1); rc=$?
echo "runuser -u nobody -- beckon vici version -> $(echo "$out" | head -c 200)" | show
check "VICI refused to user nobody" test "$rc" != 0
stats=$(runuser -u beckon -- swanctl --stats --uri unix:///var/run/charon.vici 2>&1)
echo "$stats" | grep -E 'uptime|loaded plugins' | cut -c1-400 | show
check "charon loaded kernel-netlink, not kernel-libipsec" \
  bash -c 'grep -q " kernel-netlink" <<<"$1" && ! grep -q "kernel-libipsec" <<<"$1"' _ "$stats"
check "no ipsec0 TUN device (userspace ESP not in use)" bash -c '! ip link show ipsec0 2>/dev/null'

# ---- restart after SIGKILL ------------------------------------------------------------------
for u in beckon-gateway.service beckon-agent.service; do
  pid=$(systemctl show -p MainPID --value "$u")
  kill -KILL "$pid"
  up "SIGKILL $u MainPID $pid"
  new () { local p; p=$(systemctl show -p MainPID --value "$u"); [ "$p" != 0 ] && [ "$p" != "$pid" ] && systemctl is-active --quiet "$u"; }
  check "$u back after SIGKILL" wait_for 30 new
  say "  $u MainPID $pid -> $(systemctl show -p MainPID --value "$u"), NRestarts $(systemctl show -p NRestarts --value "$u"), $(systemctl show -p ActiveState --value "$u")"
done
check "agent listens on 7400 again (VICI reopened as beckon)" wait_for 30 bash -c 'ss -Hltn "sport = :7400" | grep -q 7400'

# ---- one IPsec session with kernel ESP --------------------------------------------------------
up "kernel-ESP session"
peer=/var/tmp/vmpeer
mkdir -p "$peer"
ip netns add vmpeer
ip link add vmesp0 type veth peer name vmesp1 netns vmpeer
ip addr add 192.0.2.1/24 dev vmesp0 && ip link set vmesp0 up
ip addr add 198.51.100.1/32 dev lo
ip -n vmpeer link set lo up
ip -n vmpeer addr add 192.0.2.2/24 dev vmesp1 && ip -n vmpeer link set vmesp1 up
ip -n vmpeer addr add 198.51.100.2/32 dev lo
# As src/lab/charon.ts, but kernel-netlink only: this kernel has ESP.
cat >"$peer/strongswan.conf" <<EOF
charon {
  load = random nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey kdf kernel-netlink socket-default vici
  install_routes = yes
  plugins {
    vici {
      socket = unix://$peer/charon.vici
    }
  }
  filelog {
    charonlog {
      path = $peer/charon.log
      default = 1
      flush_line = yes
    }
  }
}
EOF
# charon's pid file is fixed at /var/run/charon.pid: a private /run in the namespace's mount ns.
STRONGSWAN_CONF=$peer/strongswan.conf ip netns exec vmpeer sh -c 'mount -t tmpfs tmpfs /run && exec /usr/lib/ipsec/charon' >"$peer/charon.stderr" 2>&1 &
peerpid=$!
check "peer charon answers on its VICI socket" wait_for 30 beckon vici --socket "unix://$peer/charon.vici" version
psk=$(head -c 24 /dev/urandom | base64)
conn () { # conn LOCAL REMOTE LOCAL_ID REMOTE_ID LOCAL_TS REMOTE_TS
  printf '{"vm":{"version":2,"local_addrs":["%s"],"remote_addrs":["%s"],"proposals":["aes256gcm16-prfsha256-x25519"],"local":{"auth":"psk","id":"%s"},"remote":{"auth":"psk","id":"%s"},"children":{"net":{"local_ts":["%s"],"remote_ts":["%s"],"esp_proposals":["aes256gcm16-x25519"],"mode":"tunnel"}}}}' "$@"
}
shared='{"id":"vm","type":"IKE","data":"'$psk'","owners":["host.vm.beckon.invalid","peer.vm.beckon.invalid"]}'
beckon vici --socket "unix://$peer/charon.vici" load-shared --json "$shared" | show
beckon vici --socket "unix://$peer/charon.vici" load-conn --json "$(conn 192.0.2.2 192.0.2.1 peer.vm.beckon.invalid host.vm.beckon.invalid 198.51.100.2/32 198.51.100.1/32)" | show
# The installed charon is programmed by the service user, as the agent does.
runuser -u beckon -- beckon vici load-shared --json "$shared" | show
runuser -u beckon -- beckon vici load-conn --json "$(conn 192.0.2.1 192.0.2.2 host.vm.beckon.invalid peer.vm.beckon.invalid 198.51.100.1/32 198.51.100.2/32)" | show
out=$(runuser -u beckon -- beckon vici initiate --json '{"child":"net","ike":"vm","timeout":15000}' 2>&1); rc=$?
echo "$out" | grep -vE '"event":"control-log"' | tail -n 3 | cut -c1-200 | show
check "initiate (as beckon) succeeds" test "$rc" = 0
# The SAs' keys stay in the guest.
ip xfrm state | sed -E 's/(aead [^ ]+ )0x[0-9a-f]+/\1<key>/' | show
check "ip xfrm state: two ESP SAs between 192.0.2.1 and 192.0.2.2" \
  bash -c '[ "$(ip xfrm state | grep -cE "^src 192\.0\.2\.[12] dst 192\.0\.2\.[12]$")" = 2 ] && [ "$(ip xfrm state | grep -c "proto esp")" = 2 ]'
ip xfrm policy | grep -E '^src|dir' | show
ping -c 3 -W 2 -I 198.51.100.1 198.51.100.2 2>&1 | show
check "ping 198.51.100.1 -> 198.51.100.2 passes" test "${PIPESTATUS[0]}" = 0
ip -s xfrm state | grep -E '^src|proto esp|[0-9]+\(bytes\)' | show
check "the ESP SAs counted the packets" bash -c 'ip -s xfrm state | grep -E "^[[:space:]]*[0-9]+\(bytes\), [1-9][0-9]*\(packets\)" | wc -l | grep -qx 2'
ip netns exec vmpeer ip xfrm state count | show
kill "$peerpid" 2>/dev/null; wait "$peerpid" 2>/dev/null
ip netns del vmpeer

finish
