# tests/fleet/etcd_cluster.sh: a 3-member etcd cluster with TLS on free
# loopback ports, for the fleet suite and the fleet simulation.  Sourced
# after tests/lib.sh (track_pid, stop_pid) with TMP set to a private
# directory; it defines:
#   wait_secs SECONDS COMMAND...  COMMAND until it succeeds, bounded by the clock
#   cert NAME CN USAGE            TMP/NAME.{key,crt} signed by TMP/ca
#   certs                         the CA, the members' and a host's certificate
#   start_member I / stop_member I, ECTL ARGS..., cluster_healthy
#   CLUSTER, ENDPOINTS, PORTS, MPID

# wait_secs SECONDS COMMAND...: COMMAND until it succeeds, bounded by the clock, for commands
# that may take seconds each (etcdctl or hakmemctl while a member is down).
wait_secs() {
    local end=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -ge "$end" ] && { "$@"; return; }
        sleep 0.2
    done
}
# ---- certificates: a CA, the members' (server and peer), a host's ----
cert() {   # name CN usage: NAME.key and NAME.crt signed by the CA
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$TMP/$1.key" \
        -out "$TMP/$1.csr" -subj "/CN=$2" 2>/dev/null &&
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=%s\n' "$3" >"$TMP/$1.ext" &&
    openssl x509 -req -in "$TMP/$1.csr" -CA "$TMP/ca.crt" -CAkey "$TMP/ca.key" -CAcreateserial \
        -out "$TMP/$1.crt" -days 2 -extfile "$TMP/$1.ext" 2>/dev/null
}
certs() {
    timeout 60 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$TMP/ca.key" \
        -out "$TMP/ca.crt" -subj "/CN=hakmem fleet test CA" -days 2 2>/dev/null &&
    cert member etcd-member serverAuth,clientAuth && cert host hakmem-host clientAuth
}
# ---- a 3-member cluster on free loopback ports ----
read -r -a PORTS < <(python3 -c "
import socket
s = [socket.socket() for _ in range(6)]
for x in s: x.bind(('127.0.0.1', 0))
print(' '.join(str(x.getsockname()[1]) for x in s))")
CLUSTER=
ENDPOINTS=
for i in 0 1 2; do
    CLUSTER+="${CLUSTER:+,}m$i=https://127.0.0.1:${PORTS[$((3 + i))]}"
    ENDPOINTS+="${ENDPOINTS:+,}https://127.0.0.1:${PORTS[$i]}"
done
MPID=("" "" "")
start_member() {
    local i=$1
    etcd --name "m$i" --data-dir "$TMP/m$i" --logger zap --log-level error \
        --listen-client-urls "https://127.0.0.1:${PORTS[$i]}" --advertise-client-urls "https://127.0.0.1:${PORTS[$i]}" \
        --listen-peer-urls "https://127.0.0.1:${PORTS[$((3 + i))]}" \
        --initial-advertise-peer-urls "https://127.0.0.1:${PORTS[$((3 + i))]}" \
        --initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token "hkd-fleet-$$" \
        --cert-file "$TMP/member.crt" --key-file "$TMP/member.key" --trusted-ca-file "$TMP/ca.crt" --client-cert-auth \
        --peer-cert-file "$TMP/member.crt" --peer-key-file "$TMP/member.key" --peer-trusted-ca-file "$TMP/ca.crt" \
        --peer-client-cert-auth --heartbeat-interval 100 --election-timeout 1000 >>"$TMP/m$i.log" 2>&1 &
    MPID[$i]=$!
    track_pid "${MPID[$i]}"
}
stop_member() { stop_pid "${MPID[$1]}" 20; MPID[$1]=; }
ECTL() {
    timeout 20 etcdctl --endpoints "$ENDPOINTS" --cacert "$TMP/ca.crt" --cert "$TMP/host.crt" --key "$TMP/host.key" \
        --dial-timeout 3s --command-timeout 10s "$@"
}
cluster_healthy() { [ "$(ECTL endpoint health 2>&1 | grep -c 'is healthy')" = 3 ]; }
