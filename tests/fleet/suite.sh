#!/usr/bin/env bash
# tests/fleet: the fleet link's unit tests (cmocka), then a real fleet: a
# 3-member etcd cluster on loopback ports with TLS (a CA and certificates
# made here with openssl; members ask clients for certificates), and three
# hakmemd instances standing for hosts A, B and C, each with its own
# segment, socket and state directory.  Clients of one binary run on A
# until its 2 MiB site settles; then B and C, which never ran the binary,
# must already publish A's arm for it, their first processes must run it,
# and their own learners must pull nothing else before it.  Then faults:
# one member stopped (learning goes on, A's new pulls still reach B), all
# three stopped (every host learns locally and says so once), the cluster
# restarted (the hosts rejoin without a restart and what A learned
# meanwhile reaches B), C killed with -9 (its lease expires; A and B stop
# counting it), and a host without a client certificate (refused, said in
# one line).
#   bash tests/fleet/suite.sh BUILD
set -u
source "$(dirname "$0")/../lib.sh"
testlib_begin fleet "${1:-build}"
T=$BUILD/tests/fleet
HAKMEMD=$BUILD/hakmemd
CTL=$BUILD/hakmemctl
CLIENT=$BUILD/tests/daemon/e2e_client_a
need "$HAKMEMD" "$CTL" "$CLIENT" "$T/test_fleet"

run_cmocka "unit test_fleet" 120 "$T/test_fleet"

for tool in etcd etcdctl openssl python3; do
    command -v $tool >/dev/null || { fail "prerequisites" "$tool is not installed (make deps installs it)"; finish; exit 1; }
done
make_tmpdir TMP hkd-fleet
source "$(dirname "$0")/etcd_cluster.sh"
FLEET=t$$
TTL=3
check "a CA and certificates for the members and the hosts" certs
for i in 0 1 2; do start_member $i; done
WHY="members did not become healthy: $(ECTL endpoint health 2>&1 | tail -3) $(tail -3 "$TMP/m0.log")"
check "a 3-member etcd cluster with TLS on loopback ports" wait_secs 60 cluster_healthy

# ---- etcd auth: a user per host, an admin for the fleet's controls ----
# Each host's role reads the fleet and writes only its own keys; the
# admin's writes the controls.  Identity is an etcd user and password: the
# JSON gateway maps no client certificate to a user, and with auth on it
# refuses a certificate that has a CommonName, so the clients' certificate
# has none (it only opens the TLS connection).  etcdctl's own certificate
# (CN hakmem-host) maps to a user with no role, so its health checks read
# "permission denied", which etcdctl counts as healthy.
auth_setup() {
    local id
    cert client "" clientAuth || return 1
    ECTL user add root --new-user-password=root-$$ && ECTL user grant-role root root &&
    ECTL user add hakmem-host --no-password || return 1
    for id in A B C; do
        printf 'pw-%s-%s\n' "$id" $$ >"$TMP/pw-$id" && chmod 600 "$TMP/pw-$id" &&
        ECTL role add "fleet-host-$id" &&
        ECTL role grant-permission "fleet-host-$id" --prefix=true read "/hakmem/$FLEET/" &&
        ECTL role grant-permission "fleet-host-$id" --prefix=true readwrite "/hakmem/$FLEET/hosts/$id/" &&
        ECTL user add "host-$id" --new-user-password="pw-$id-$$" && ECTL user grant-role "host-$id" "fleet-host-$id" ||
            return 1
    done
    printf 'pw-admin-%s\n' $$ >"$TMP/pw-admin" && chmod 600 "$TMP/pw-admin" &&
    ECTL role add fleet-admin && ECTL role grant-permission fleet-admin --prefix=true read "/hakmem/$FLEET/" &&
    ECTL role grant-permission fleet-admin --prefix=true readwrite "/hakmem/$FLEET/controls/" &&
    ECTL user add fleet-admin --new-user-password="pw-admin-$$" && ECTL user grant-role fleet-admin fleet-admin &&
    ECTL auth enable
}
auth_setup >"$TMP/auth.log" 2>&1; rc=$?
WHY="$(tail -3 "$TMP/auth.log")"
check "etcd auth on: a user and role per host, an admin role for the controls" test $rc = 0

# ---- three hosts ----
declare -A HPID
start_host() {   # ID [OPTION...]: hakmemd for host ID
    local id=$1
    shift
    mkdir -p "$TMP/$id/state"
    track_shm "/hkd-fleet-$id-$$"
    "$HAKMEMD" --foreground --shm "/hkd-fleet-$id-$$" --socket "$TMP/$id/ctl.sock" --state-dir "$TMP/$id/state" \
        --interval 200 --debug --fleet-endpoints "$ENDPOINTS" --fleet-name "$FLEET" --host-id "$id" \
        --fleet-cacert "$TMP/ca.crt" --fleet-sync 500 --fleet-ttl "$TTL" "$@" >>"$TMP/$id.log" 2>&1 &
    HPID[$id]=$!
    track_pid "${HPID[$id]}"
    wait_secs 10 grep -q "running:" "$TMP/$id.log"
}
CLIENTCERT=(--fleet-cacert "$TMP/ca.crt" --fleet-cert "$TMP/client.crt" --fleet-key "$TMP/client.key")
as_host() { echo --fleet-cert "$TMP/client.crt" --fleet-key "$TMP/client.key" --fleet-user "host-$1" --fleet-password-file "$TMP/pw-$1"; }
C() { local id=$1; shift; timeout 20 "$CTL" --socket "$TMP/$id/ctl.sock" "$@"; }
fleet_field() {   # ID EXPR: a field of hakmemctl fleet --json, as Python prints it
    C "$1" --json fleet | python3 -c "import json, sys; j = json.load(sys.stdin); print($2)"
}
run_client() {   # ID TAG MS: a client of the one binary on host ID, in the background
    env HAKMEM_SHM="/hkd-fleet-$1-$$" HAKMEM_SOCKET="$TMP/$1/ctl.sock" HAKMEM_STATS=1 \
        timeout -k 5 120 "$CLIENT" "$3" >"$TMP/$2.out" 2>"$TMP/$2.err" &
    CPID=$!
    track_pid "$CPID"
}
for id in A B C; do
    # shellcheck disable=SC2046
    start_host "$id" $(as_host "$id"); rc=$?
    WHY="host $id: $(tail -3 "$TMP/$id.log")"
    check "host $id starts with the fleet configured" test $rc = 0
done
joined() { grep -q "fleet: joined etcd as host $1 of fleet $FLEET" "$TMP/$1.log"; }
for id in A B C; do
    WHY="$(grep fleet: "$TMP/$id.log" | tail -2)"
    check "host $id joins the fleet (one line)" wait_secs 20 joined $id
done

# ---- learning on A only ----
# site_json ID KEY: the site's JSON on host ID ('{}' while it has none).
site_json() {
    C "$1" --json sites --top 0 | python3 -c "
import json, sys
print(json.dumps(next((s for s in json.load(sys.stdin)['sites'] if s['site'] == '$2'), {})))"
}
large_key() {   # the key of the binary's 2 MiB site on host A
    C A --json sites --top 0 --exe e2e_client_a | python3 -c "
import json, sys
print(next(s['site'] for s in json.load(sys.stdin)['sites'] if (s.get('function') or '').startswith('site_large+')))"
}
KEY=
a_settled() {   # the site settled on A with at least 20 pulls of its own
    [ -n "$KEY" ] || KEY=$(large_key 2>/dev/null) || return 1
    site_json A "$KEY" | python3 -c "
import json, sys
s = json.load(sys.stdin)
sys.exit(not (s.get('settled') and s['own_pulls'] >= 20 and not s['thin']))"
}
# own_pulls ID: the pulls of the site that host ID made itself
own_pulls() { site_json "$1" "$KEY" | python3 -c "import json, sys; print(json.load(sys.stdin).get('own_pulls', 0))"; }
# A pull of A's can end an interval or two after its client exits, and the
# arm chosen then may be one UCB1 explores: A has settled only when its
# pulls have stopped (no change over a second, five intervals) and its arm
# is then the best of its own, the one B and C take from the fleet.
a_quiet() {
    local before after i
    [ -n "$KEY" ] || KEY=$(large_key 2>/dev/null) || return 1
    before=$(own_pulls A)
    for ((i = 0; i < 20; i++)); do
        sleep 1
        after=$(own_pulls A)
        [ "$after" = "$before" ] && return 0
        before=$after
    done
    return 1
}
settle_on_a() {
    local i
    for ((i = 0; i < 12; i++)); do
        run_client A a$i 5000
        wait_pid "$CPID" 60
        a_quiet && a_settled && return 0
    done
    return 1
}
settle_on_a; rc=$?
WHY="site ${KEY:-?} on A: $(site_json A "${KEY:-none}" 2>&1 | cut -c 1-400)"
check "clients on host A settle its 2 MiB site" test $rc = 0
# The arm A runs for it, as its interval log says (arm=N).
arm_in_log() { grep -E "site $2 .* arm=[0-9]" "$TMP/$1.log" | tail -1 | sed -E 's/.* arm=([0-9]+).*/\1/'; }
ARM=$(arm_in_log A "$KEY")
THRESH=$(site_json A "$KEY" | python3 -c "import json, sys; print(json.load(sys.stdin)['thresholds'])")
echo "# site $KEY settled on A: arm ${ARM:-?}, thresholds $THRESH"

# ---- B and C know it before any process of theirs runs it ----
ready_on() {   # ID: the site published with A's thresholds, from the fleet, no pull of its own
    site_json "$1" "$KEY" | python3 -c "
import json, sys
s = json.load(sys.stdin)
sys.exit(not (s and str(s['thresholds']) == \"\"\"$THRESH\"\"\" and s['fleet_pulls'] > 0 and s['own_pulls'] == 0
              and s['settled']))"
}
for id in B C; do
    WHY="site on $id: $(site_json $id "$KEY" 2>&1 | cut -c 1-400)"
    check "host $id publishes A's arm for the site before any of its processes runs it" wait_secs 20 ready_on $id
done
A_PULLS=$(site_json A "$KEY" | python3 -c "import json, sys; print(json.load(sys.stdin)['own_pulls'])")
b_counts_a() { [ "$(site_json B "$KEY" | python3 -c "import json, sys; print(json.load(sys.stdin)['fleet_pulls'])")" -ge "$A_PULLS" ]; }
WHY="B counts $(site_json B "$KEY" | cut -c 1-300) against A's $A_PULLS"
check "host B counts all of A's pulls of the site" wait_secs 15 b_counts_a

OFF=$(printf '0x%x' "0x${KEY#*:}")
# What an exit report says of a site that runs A's arm.
REPORTED=$(THRESH="$THRESH" python3 -c "
import ast, os
t = ast.literal_eval(os.environ['THRESH'])
print('large>=%dK slots=%d thp=%s [(]daemon[)]' % (t['large_threshold'] >> 10, t['bigcache_slots'], 'on' if t['thp'] else 'off'))")
# pull_arms ID N: the arms of the host's first N pulls of the site, from
# its interval lines (a line names the arm published for the next interval;
# a pull never spans a change of arm, so the pulls that end in an interval
# are of the arm the line before it names).
pull_arms() {
    grep -E "site $KEY " "$TMP/$1.log" | awk -v want="$2" '
        { arm = $0; sub(/.* arm=/, "", arm); sub(/[(].*/, "", arm); pulls = $0; sub(/.* pulls=/, "", pulls); sub(/ .*/, "", pulls) }
        { for (; done < pulls + 0 && done < want; done++) printf "%s ", last; if (done >= want) exit; last = arm }'
}
for id in B C; do
    # A process of 100 ms: done before its host could have learned or
    # published anything of its own for the site.
    env HAKMEM_SHM="/hkd-fleet-$id-$$" HAKMEM_SOCKET="$TMP/$id/ctl.sock" HAKMEM_STATS=1 \
        timeout 60 "$CLIENT" 100 >"$TMP/${id}0.out" 2>"$TMP/${id}0.err"
    WHY="$(grep -E "\+$OFF " "$TMP/${id}0.err") (want $REPORTED)"
    check "host $id: its first process, 100 ms long, ran A's arm for the site (exit report)" \
        bash -c "grep -qE '\+$OFF .* $REPORTED' '$TMP/${id}0.err' && grep -q 'rounds ok' '$TMP/${id}0.out'"
    run_client $id ${id}1 3000
    wait_pid "$CPID" 60
    # Lines while its process ran and before its first pull: A's arm only.
    before=$(grep -E "site $KEY .* pulls=0 " "$TMP/$id.log" | grep -vE " procs=0 " | grep -oE "arm=[0-9]+" | sort -u | tr '\n' ' ')
    # Alone, a learner's second pull of this site would be of the other arm
    # that matters for its size (it pulls each once before it settles).
    first=$(pull_arms $id 2)
    WHY="arms of its first two pulls: ${first:-none}; arms while its process ran before them: ${before:-none}; A's: $ARM"
    check "host $id: no pull of its own before it applied A's arm, and its first two were of A's arm (no exploring)" \
        bash -c "[ '$first' = '$ARM $ARM ' ] && { [ -z '$before' ] || [ '$before' = 'arm=$ARM ' ]; }"
done

# ---- inspection ----
WHY="$(C A fleet 2>&1 | head -20)"
check "hakmemctl fleet on A: up, both other hosts, the site shared" bash -c "
    out=\$(timeout 20 '$CTL' --socket '$TMP/A/ctl.sock' fleet) &&
    grep -q '^fleet $FLEET, host A: up' <<<\"\$out\" && grep -qE '^    B +wrote' <<<\"\$out\" &&
    grep -qE '^    C +wrote' <<<\"\$out\" && grep -qE 'https://127.0.0.1:${PORTS[0]} +up' <<<\"\$out\""
WHY="$(C B --json fleet 2>&1 | cut -c 1-400)"
check "hakmemctl --json fleet on B: A's sites shared, keys and bytes written" bash -c "
    [ \"\$(timeout 20 '$CTL' --socket '$TMP/B/ctl.sock' --json fleet | python3 -c \"
import json, sys
j = json.load(sys.stdin)
print(j['up'] and j['sites_shared'] >= 1 and j['keys_written'] >= 1 and j['bytes_written'] > 0 and
      sorted(h['id'] for h in j['hosts']) == ['A', 'C'])\")\" = True ]"
WHY="$(C B sites --top 0 2>&1 | grep -A3 "$KEY" | head -5)"
check "hakmemctl sites on B: pulls of its own and from the fleet" bash -c \
    "timeout 20 '$CTL' --socket '$TMP/B/ctl.sock' sites --top 0 | grep -qE '^   pulls [0-9]+ of this host.s, [0-9]+ from the fleet.s other hosts'"
WHY="$(C A metrics 2>&1 | grep hakmem_fleet | head -8)"
check "metrics: the fleet link up, its last sync's age, bytes and keys written" bash -c "
    m=\$(timeout 20 '$CTL' --socket '$TMP/A/ctl.sock' metrics) &&
    grep -q '^hakmem_fleet_up 1$' <<<\"\$m\" && grep -q '^hakmem_fleet_last_sync_age_seconds ' <<<\"\$m\" &&
    grep -qE '^hakmem_fleet_written_bytes_total [1-9]' <<<\"\$m\" && grep -qE '^hakmem_fleet_written_keys_total [1-9]' <<<\"\$m\""

# ---- sites where the hosts disagree ----
# B pinned locally to another arm: A lists the site, with each host's arm.
# A and C are compared with the arm each runs now (its latest interval
# line), not the one A settled on: the pulls B and C added since count in
# A's evidence too, and a settled site still tries another arm now and then.
OTHER=$(( (ARM + 2) % 8 ))
C B pin "$KEY" "$OTHER" >"$TMP/pin-b.out" 2>&1
listed_on_a() {
    local a c
    a=$(arm_in_log A "$KEY") c=$(arm_in_log C "$KEY")
    [ -n "$a" ] && [ -n "$c" ] && [ "$a" != "$OTHER" ] || return 1
    C A --json fleet | python3 -c "
import json, sys
j = json.load(sys.stdin)
d = next((d for d in j['disagree'] if d['site'] == '$KEY'), None)
arms = {a['host']: a['arm'] for a in d['arms']} if d else {}
sys.exit(not (j['sites_disagree'] >= 1 and arms.get('B') == $OTHER and arms.get('A') == $a and arms.get('C') == $c))" &&
        echo "$a" >"$TMP/a-listed"
}
WHY="$(C A --json fleet 2>&1 | python3 -c "import json, sys; print(json.load(sys.stdin).get('disagree'))" 2>&1 | cut -c 1-400);
 pin on B: $(cat "$TMP/pin-b.out"); on B: $(site_json B "$KEY" | cut -c 1-200) ... $(grep -E "fleet:|site $KEY" "$TMP/B.log" | tail -3)"
WHY_AFTER='for h in A B; do echo "$h after the wait:"; C $h fleet 2>&1 | head -8; done; grep -E "fleet" "$TMP/B.log" | tail -8;
    echo "B, the site after the wait:"; grep -E "site $KEY" "$TMP/B.log" | tail -2; site_json B "$KEY" | cut -c 1-300;
    for h in A C; do echo "$h runs arm $(arm_in_log $h "$KEY") (settled on $ARM)"; done'
check "hakmemctl --json fleet on A: the site B runs another arm for, with each host's arm" wait_secs 40 listed_on_a
# The arm A was listed on (checks run in a subshell), not its log's
# latest, which may run ahead of what A last wrote to the fleet.
A_NOW=$(cat "$TMP/a-listed" 2>/dev/null)
WHY="$(C A fleet 2>&1 | tail -3)"
check "hakmemctl fleet on A lists it: A: arm $A_NOW, B: arm $OTHER" bash -c "
    [ -n '$A_NOW' ] && timeout 20 '$CTL' --socket '$TMP/A/ctl.sock' fleet | grep -E '^    ${KEY} .* pulls .*A: arm $A_NOW.*B: arm $OTHER'"
C B unpin "$KEY" >/dev/null

# ---- fleet controls: pins and resets, authorised by etcd ----
fleet_pulls() { site_json "$1" "$KEY" | python3 -c "import json, sys; print(json.load(sys.stdin).get('fleet_pulls', 0))"; }
# FCTL USER ARGS...: hakmemctl fleet ARGS as etcd user USER ("": none)
FCTL() {
    local user=$1
    shift
    timeout 30 "$CTL" fleet "$@" --fleet-endpoints "$ENDPOINTS" --fleet-name "$FLEET" "${CLIENTCERT[@]}" \
        ${user:+--fleet-user "$user" --fleet-password-file "$TMP/pw-${user#host-}"}
}
cp "$TMP/pw-admin" "$TMP/pw-fleet-admin"
fleet_up() { [ "$(fleet_field "$1" "j['up']")" = True ]; }
joined_again() { [ "$(grep -c "fleet: joined etcd as host $1 of fleet" "$TMP/$1.log")" -ge 2 ]; }
SITE=${KEY}
PIN=$(( (ARM + 1) % 8 ))
# pinned_on ID ARM: the site on host ID is pinned by the fleet to ARM and publishes that arm's thresholds
pinned_on() {
    site_json "$1" "$KEY" | python3 -c "
import json, sys
s = json.load(sys.stdin)
name = s['arms'][$2]['name']
want = dict(p.split('=') for p in name.split(','))
large = int(want['large'][:-1]) << (20 if want['large'].endswith('M') else 10)
t = s['thresholds']
sys.exit(not (s['pinned_arm'] == $2 and s['fleet_pinned'] and t['large_threshold'] == large and
              t['bigcache_slots'] == int(want['slots']) and t['thp'] == (want['thp'] == 'on')))"
}
unpinned_on() { site_json "$1" "$KEY" | python3 -c "
import json, sys
s = json.load(sys.stdin)
sys.exit(not (s['pinned_arm'] == -1 and not s['fleet_pinned']))"; }

FCTL host-B pin "$SITE" "$PIN" >"$TMP/pin-host.out" 2>"$TMP/pin-host.err"; rc=$?
echo "# host-B: $(cat "$TMP/pin-host.err")"
WHY="rc $rc: $(cat "$TMP/pin-host.err" "$TMP/pin-host.out")"
check "a host's etcd user cannot pin: refused, in one line that says etcd refused it" \
    bash -c "[ $rc != 0 ] && [ \$(wc -l <'$TMP/pin-host.err') = 1 ] && [ ! -s '$TMP/pin-host.out' ] &&
             grep -q 'fleet pin: etcd refused it: .*permission denied' '$TMP/pin-host.err'"
FCTL "" pin "$SITE" "$PIN" >"$TMP/pin-none.out" 2>"$TMP/pin-none.err"; rc=$?
echo "# no user: $(cat "$TMP/pin-none.err")"
WHY="rc $rc: $(cat "$TMP/pin-none.err")"
check "no etcd user: fleet pin refused, in one line" \
    bash -c "[ $rc != 0 ] && [ \$(wc -l <'$TMP/pin-none.err') = 1 ] && grep -q 'fleet pin: etcd refused it' '$TMP/pin-none.err'"
printf 'not-the-password\n' >"$TMP/pw-wrong"
FCTL "" pin "$SITE" "$PIN" --fleet-user fleet-admin --fleet-password-file "$TMP/pw-wrong" \
    >"$TMP/pin-wrong.out" 2>"$TMP/pin-wrong.err"; rc=$?
echo "# wrong password: $(cat "$TMP/pin-wrong.err")"
WHY="rc $rc: $(cat "$TMP/pin-wrong.err")"
check "the admin's user with a wrong password: refused, in one line" \
    bash -c "[ $rc != 0 ] && [ \$(wc -l <'$TMP/pin-wrong.err') = 1 ] &&
             grep -q 'fleet pin: etcd refused it: etcd user fleet-admin: .*authentication failed' '$TMP/pin-wrong.err'"
ectl_as() { local u=$1; shift; ECTL --user "$u:$(cat "$TMP/pw-${u#host-}")" "$@"; }
ectl_as host-B put "/hakmem/$FLEET/hosts/A/shard/0000" forged >"$TMP/forge.out" 2>&1; rc=$?
WHY="rc $rc: $(tail -2 "$TMP/forge.out")"
check "a host's etcd user cannot write another host's keys" \
    bash -c "[ $rc != 0 ] && grep -q 'permission denied' '$TMP/forge.out'"
for id in A B C; do
    WHY="$(grep 'fleet:' "$TMP/$id.log" | tail -2)"
    check "host $id's link stays up under etcd auth" wait_secs 15 fleet_up $id
done

FCTL fleet-admin pin "$SITE" "$PIN" >"$TMP/pin.out" 2>&1; rc=$?
echo "# fleet-admin: $(cat "$TMP/pin.out")"
WHY="rc $rc: $(cat "$TMP/pin.out")"
check "the admin's etcd user pins the site fleet-wide" test $rc = 0
for id in A B C; do
    WHY="site on $id: $(site_json $id "$KEY" 2>&1 | cut -c 1-300)"
    check "host $id publishes the fleet's pinned arm $PIN for the site" wait_secs 20 pinned_on $id $PIN
done
WHY="$(C B sites --top 0 2>&1 | grep -A3 "$KEY" | head -4)"
check "hakmemctl sites on B: the site pinned by the fleet" \
    bash -c "timeout 20 '$CTL' --socket '$TMP/B/ctl.sock' sites --top 0 | grep -q 'pinned: arm $PIN (by the fleet)'"
FCTL fleet-admin unpin "$SITE" >"$TMP/unpin.out" 2>&1; rc=$?
for id in A B C; do
    WHY="rc $rc $(cat "$TMP/unpin.out"); site on $id: $(site_json $id "$KEY" 2>&1 | cut -c 1-300)"
    check "fleet unpin: host $id learns the site again" wait_secs 20 unpinned_on $id
done

# A reset: every host forgets the site, its own pulls and the fleet's, once.
# Host Z stands for a host that has not applied it yet: its value, written
# (by root) before the reset, holds 7 pulls of the site and must stop
# counting; written again after the reset, it counts again.
put_z() {
    python3 -c "
import struct, sys, time
h, o = '$KEY'.split(':')
site = struct.pack('<IQQBBBbdB', 0, int(h, 16), int(o, 16), 0, 0, 0, $PIN, 0.0, 1 << $PIN) + struct.pack('<Id', 7, 3.5)
sys.stdout.buffer.write(b'HKF1' + struct.pack('<HHIQ', 0, 1, 1, int(time.time())) + site)" |
        ECTL --user "root:root-$$" put "/hakmem/$FLEET/hosts/Z/shard/0000"
}
counts_z() { [ "$(fleet_pulls B)" -ge 7 ]; }
put_z >/dev/null 2>&1
WHY="B counts $(fleet_pulls B) from the fleet"
check "host Z's value, written before the reset, counts on B" wait_secs 20 counts_z
site_pulls() { site_json "$1" "$KEY" | python3 -c "import json, sys; s = json.load(sys.stdin); print(s.get('own_pulls', 0) + s.get('fleet_pulls', 0))"; }
cleared_on() { [ "$(site_pulls "$1")" = 0 ]; }
FCTL fleet-admin reset "$SITE" >"$TMP/reset.out" 2>&1; rc=$?
for id in A B C; do
    WHY="rc $rc $(cat "$TMP/reset.out"); site on $id: $(site_json $id "$KEY" 2>&1 | cut -c 1-300)"
    check "fleet reset: host $id forgets the site's pulls, its own and the fleet's" wait_secs 20 cleared_on $id
done
put_z >/dev/null 2>&1
WHY="B counts $(fleet_pulls B) from the fleet"
check "host Z's value, written again after the reset, counts on B again" wait_secs 20 counts_z
ECTL --user "root:root-$$" del "/hakmem/$FLEET/hosts/Z/shard/0000" >/dev/null 2>&1
z_gone() { [ "$(fleet_field B "[h['id'] for h in j['hosts']]")" = "['A', 'C']" ]; }
WHY="B sees $(fleet_field B "[h['id'] for h in j['hosts']]" 2>&1)"
check "host Z's key deleted: B stops counting it" wait_secs 20 z_gone
learn_again() {   # A's clients until A has pulls of the site again
    local i
    for ((i = 0; i < 4; i++)); do
        run_client A r$i 3000
        wait_pid "$CPID" 60
        [ "$(own_pulls A)" -gt 0 ] && return 0
    done
    return 1
}
learn_again; rc=$?
check "after the reset, A learns the site again" test $rc = 0
stop_pid "${HPID[A]}" 20
BEFORE=$(grep -c "fleet: reset site" "$TMP/A.log")
# shellcheck disable=SC2046
start_host A $(as_host A)
WHY="$(grep 'fleet:' "$TMP/A.log" | tail -2)"
check "host A restarted rejoins" wait_secs 20 joined_again A
A_AFTER=$(own_pulls A)
WHY="A's own pulls after its restart: $A_AFTER; reset lines: $(grep 'fleet: reset' "$TMP/A.log")"
check "a reset is applied once: host A's restart keeps what it learned since" \
    bash -c "[ '$A_AFTER' -gt 0 ] && [ \$(grep -c 'fleet: reset site' '$TMP/A.log') = $BEFORE ] && [ $BEFORE = 1 ]"

# ---- faults ----
learn_a_while() {   # ms: A's clients run that long; 0 when A's own pulls grew
    local before
    before=$(own_pulls A)
    run_client A more$RANDOM "$1"
    wait_pid "$CPID" 60
    [ "$(own_pulls A)" -gt "$before" ]
}
# b_has_a_pulls: B counts all that A and C have pulled by now (both idle):
# what B counts of them is at most what they pulled, so this is equality.
b_has_a_pulls() { local a c; a=$(own_pulls A); c=$(own_pulls C); [ "$(fleet_pulls B)" -ge $((a + c)) ]; }

link_up() { [ "$(fleet_field "$1" "j['up']")" = True ]; }
stop_member 0
learn_a_while 3000; rc=$?
check "one member stopped: A goes on learning" test $rc = 0
WHY="A pulled $(own_pulls A), C $(own_pulls C); B counts $(fleet_pulls B)"
check "one member stopped: what A learned reaches B (nothing lost)" wait_secs 20 b_has_a_pulls
for id in A B C; do
    WHY="$(C $id fleet 2>&1 | head -8)"
    check "one member stopped: host $id's link is up" wait_secs 15 link_up $id
done
start_member 0
check "the stopped member rejoins the cluster" wait_secs 60 cluster_healthy

# What each host has said so far: a host may have found etcd unreachable
# while one member was down and the other two elected a leader.
declare -A SAID_BEFORE
for id in A B C; do SAID_BEFORE[$id]=$(grep -c "fleet: etcd unreachable" "$TMP/$id.log"); done
for i in 0 1 2; do stop_member $i; done
down() { [ "$(grep -c "fleet: etcd unreachable" "$TMP/$1.log")" -gt "${SAID_BEFORE[$1]}" ]; }
for id in A B C; do
    check "cluster stopped: host $id says the fleet is down" wait_secs 20 down $id
done
learn_a_while 3000; rc=$?
check "cluster stopped: A goes on learning locally" test $rc = 0
# More syncs, each failing: none may add a line, and the fleet thread
# waits between them (a loop that retried at once would take a core).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
t0=$(cpu_ticks "${HPID[B]}")
sleep 3
t1=$(cpu_ticks "${HPID[B]}")
WHY="host B took $((t1 - t0)) of $((3 * $(getconf CLK_TCK))) clock ticks in 3 s"
check "cluster stopped: host B waits between attempts (under a third of a core)" \
    test $((t1 - t0)) -lt "$(getconf CLK_TCK)"
for id in A B C; do
    n=$(( $(grep -c "fleet: etcd unreachable" "$TMP/$id.log") - SAID_BEFORE[$id] ))
    WHY="$n lines since the members stopped: $(grep 'fleet:' "$TMP/$id.log" | tail -3)"
    check "cluster stopped: host $id said so once, not once per sync" test "$n" = 1
done
for id in A B C; do
    kill -0 "${HPID[$id]}" 2>/dev/null && ok "cluster stopped: host $id still runs" || fail "cluster stopped: host $id still runs" "it exited"
done

for i in 0 1 2; do start_member $i; done
check "the cluster restarts" wait_secs 60 cluster_healthy
rejoined() { grep -q "fleet: rejoined etcd as host $1" "$TMP/$1.log"; }
for id in A B C; do
    WHY="$(grep 'fleet:' "$TMP/$id.log" | tail -3)"
    check "cluster restarted: host $id rejoins without a restart" wait_secs 30 rejoined $id
done
WHY="A pulled $(own_pulls A), C $(own_pulls C); B counts $(fleet_pulls B)"
check "cluster restarted: what A learned meanwhile reaches B" wait_secs 20 b_has_a_pulls

# kill -9 C: its lease expires, and A and B stop counting it.
C_PULLS=$(own_pulls C)
kill_pid "${HPID[C]}"
gone() { [ "$(fleet_field "$1" "sorted(h['id'] for h in j['hosts'])")" = "$2" ]; }
WHY="A sees $(fleet_field A "[h['id'] for h in j['hosts']]" 2>&1)"
check "kill -9 of C: its lease expires and A stops counting it" wait_secs $((TTL + 20)) gone A "['B']"
WHY="B sees $(fleet_field B "[h['id'] for h in j['hosts']]" 2>&1)"
check "kill -9 of C: B stops counting it" wait_secs 10 gone B "['A']"
b_counts_only_a() { [ "$(fleet_pulls B)" = "$(own_pulls A)" ]; }
WHY="B counts $(fleet_pulls B) from the fleet; A pulled $(own_pulls A), C had $C_PULLS"
check "kill -9 of C: B's fleet pulls of the site are A's alone" wait_secs 20 b_counts_only_a

# ---- a host without credentials ----
start_host D; rc=$?
sleep 3   # syncs, each refused
WHY="rc $rc: $(grep fleet: "$TMP/D.log")"
check "a host without a client certificate is refused, in one line, and runs alone" \
    bash -c "[ $rc = 0 ] && [ \$(grep -c 'fleet: ' '$TMP/D.log') = 1 ] &&
             grep -q 'fleet: etcd refused host D: .*; learning locally' '$TMP/D.log' && kill -0 ${HPID[D]}"
WHY="$(fleet_field A "[h['id'] for h in j['hosts']]" 2>&1)"
check "the refused host never counts in the fleet" gone A "['B']"

for id in A B D; do
    stop_pid "${HPID[$id]}" 20; rc=$?
    WHY="exit status $rc: $(tail -2 "$TMP/$id.log")"
    check "host $id stops cleanly" test $rc = 0
done
WHY="$(grep 'left fleet' "$TMP/A.log")"
check "a host that stops gives its lease back" grep -q "fleet: host A left fleet $FLEET (lease revoked)" "$TMP/A.log"
for i in 0 1 2; do stop_member $i; done
finish
