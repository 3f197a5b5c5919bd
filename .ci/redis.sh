#!/usr/bin/env bash
# Real redis-server topologies for the Redis suites beyond the single
# standalone server that .ci/run starts: a Redis Cluster, a Sentinel-managed
# master/replica pair, and a TLS-only server that requires client
# certificates. Debian's redis-server (7.0) only, all on 127.0.0.1,
# daemonized with pid files; data, configs, logs and certificates live in
# REDIS_CI_DIR.
#
#   .ci/redis.sh start-cluster   3 masters (no replicas) on 17000-17002 in
#                                cluster mode, all 16384 slots assigned
#   .ci/redis.sh start-sentinel  master 17100, replica 17101, sentinels on
#                                17200-17202 monitoring them as mh-master
#   .ci/redis.sh failover        SENTINEL FAILOVER mh-master; waits until every
#                                sentinel names the former replica as master
#                                and the former master replicates from it;
#                                prints REDIS_SENTINEL_MASTER_ADDR=<new master>
#   .ci/redis.sh start-tls       a TLS-only server on 17300 (tls-auth-clients
#                                yes) with a CA, server and client
#                                certificates made by openssl; prints its URL
#                                as REDIS_URL and again as REDIS_TLS_URL
#   .ci/redis.sh stop [cluster|sentinel|tls]
#                                stops what this script started (all by
#                                default); nothing running is not an error
#
# A start-* stops that topology first and starts it on empty data. Its stdout
# is only NAME=value lines (to eval or append to a file), progress goes to
# stderr; a failure prints the reason and the servers' log tails on stderr
# and exits non-zero.
#
# Environment (defaults): REDIS_CI_DIR (/tmp/mailchimp-heap-redis),
# REDIS_START_TIMEOUT (30 s), REDIS_STOP_TIMEOUT (10 s).
set -euo pipefail

REDIS_CI_DIR=${REDIS_CI_DIR:-/tmp/mailchimp-heap-redis}
REDIS_START_TIMEOUT=${REDIS_START_TIMEOUT:-30}
REDIS_STOP_TIMEOUT=${REDIS_STOP_TIMEOUT:-10}
HOST=127.0.0.1
CLUSTER_PORTS=(17000 17001 17002)
SENTINEL_MASTER_PORT=17100
SENTINEL_REPLICA_PORT=17101
SENTINEL_PORTS=(17200 17201 17202)
MASTER_NAME=mh-master
TLS_PORT=17300

# The directory whose logs die shows: the topology being worked on.
MODE_DIR=$REDIS_CI_DIR

log() { printf 'redis.sh: %s\n' "$*" >&2; }

die() {
  local logs
  mapfile -t logs < <(find "$MODE_DIR" -name '*.log' 2>/dev/null | sort)
  fail_with_logs redis.sh "$*" 25 "${logs[@]}"
}

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

cli() { timeout 5 redis-cli -h "$HOST" "$@" 2>&1; }

# One INFO/CLUSTER INFO field, e.g. info_field 17000 "cluster info" cluster_state.
info_field() {
  local port=$1 cmd=$2 field=$3
  # shellcheck disable=SC2086 # cmd is words on purpose
  cli -p "$port" $cmd | tr -d '\r' | sed -n "s/^$field://p"
}

# Waits up to REDIS_START_TIMEOUT for "$@" to succeed, else dies with $1.
wait_for() {
  local what=$1 deadline=$((SECONDS + REDIS_START_TIMEOUT))
  shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || die "$what (waited $REDIS_START_TIMEOUT s)"
    sleep 0.2
  done
}

need_tools() {
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 ||
    die "redis-server/redis-cli not found (apt-get install redis-server redis-tools)"
}

# --- processes --------------------------------------------------------------

# Pids of the redis-server processes (servers and sentinels) that run in a
# directory under $1: redis chdirs to its --dir, so this finds ours even when
# a pid file is gone, and nobody else's.
our_pids() {
  local under=$1 p cwd exe
  for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    case ${exe##*/} in redis-server | redis-check-rdb | redis-sentinel) ;; *) continue ;; esac
    cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
    case $cwd/ in "$under"/*) echo "${p#/proc/}" ;; esac
  done
}

# SIGTERM (redis exits at once without persistence), SIGKILL after
# REDIS_STOP_TIMEOUT; then removes pid files.
stop_under() {
  local dir=$1 pids
  [ -d "$dir" ] || return 0
  pids=$(our_pids "$dir")
  if [ -z "$pids" ]; then
    find "$dir" -name '*.pid' -delete
    return 0
  fi
  # shellcheck disable=SC2086 # one word per pid
  stop_pids "$REDIS_STOP_TIMEOUT" $pids
  find "$dir" -name '*.pid' -delete
  log "stopped ${dir##*/} (pids $(echo $pids))"
}

# A fresh, empty directory for a topology, with nothing of ours running in
# it and its ports free.
fresh_dir() {
  local dir=$1 p
  shift
  stop_under "$dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  for p in "$@"; do
    port_open "$p" && die "port $p on $HOST is taken by a process that is not ours: $(ss -ltnpH "sport = :$p" 2>/dev/null | head -n 1)"
  done
  return 0
}

# Starts a daemonized redis-server with its data, pid file and log in $1
# (created), listening on $2; further arguments are passed on. A config file,
# when needed, must come first in those (redis-server's rule).
start_server() {
  local dir=$1 port=$2
  shift 2
  mkdir -p "$dir"
  local conf=()
  if [ $# -gt 0 ] && [ -f "$1" ]; then
    conf=("$1")
    shift
  fi
  # fd 9 (the lock) closed: a daemon must not keep other script runs waiting.
  if ! redis-server "${conf[@]}" --bind "$HOST" --port "$port" --dir "$dir" \
      --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
      "$@" </dev/null >>"$dir/startup.log" 2>&1 9>&-; then
    die "redis-server on port $port did not start"
  fi
}

pong() { cli -p "$1" ping | grep -q '^PONG$'; }

# --- cluster ----------------------------------------------------------------

cluster_ok() {
  local p
  for p in "${CLUSTER_PORTS[@]}"; do
    [ "$(info_field "$p" 'cluster info' cluster_state)" = ok ] || return 1
    [ "$(info_field "$p" 'cluster info' cluster_slots_ok)" = 16384 ] || return 1
    [ "$(info_field "$p" 'cluster info' cluster_known_nodes)" = "${#CLUSTER_PORTS[@]}" ] || return 1
  done
}

start_cluster() {
  local t0 dir=$REDIS_CI_DIR/cluster p addrs=() ports=()
  t0=$(now_ms)
  MODE_DIR=$dir
  for p in "${CLUSTER_PORTS[@]}"; do ports+=("$p" $((p + 10000))); done
  fresh_dir "$dir" "${ports[@]}"
  for p in "${CLUSTER_PORTS[@]}"; do
    start_server "$dir/$p" "$p" --save '' --appendonly no \
      --cluster-enabled yes --cluster-config-file "$dir/$p/nodes.conf" --cluster-node-timeout 5000
    addrs+=("$HOST:$p")
  done
  for p in "${CLUSTER_PORTS[@]}"; do
    wait_for "redis-server on port $p does not answer PING" pong "$p"
  done
  log "creating the cluster: ${addrs[*]} (3 masters, no replicas)"
  if ! timeout 60 redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes \
      >"$dir/cluster-create.log" 2>&1; then
    die "redis-cli --cluster create failed"
  fi
  wait_for "the cluster does not reach cluster_state:ok with 16384 slots and 3 nodes on every node" cluster_ok
  log "cluster ready in $(secs_since "$t0") s (logs in $dir/<port>/redis.log)"
  local IFS=,
  echo "REDIS_CLUSTER_ADDRS=${addrs[*]}"
}

# --- sentinel ---------------------------------------------------------------

# The address every sentinel gives for mh-master, if they agree; else nothing.
sentinels_master() {
  local p a first=
  for p in "${SENTINEL_PORTS[@]}"; do
    a=$(cli -p "$p" sentinel get-master-addr-by-name "$MASTER_NAME" | tr -d '\r' | paste -sd: -)
    [[ $a == "$HOST":[0-9]* ]] || return 1
    [ -z "$first" ] || [ "$a" = "$first" ] || return 1
    first=$a
  done
  echo "$first"
}

# Every sentinel agrees that the master is $1, knows the replica $2 as a
# healthy replica (flags exactly "slave") and can reach a failover quorum.
sentinels_see() {
  local master=$1 replica=$2 p
  [ "$(sentinels_master)" = "$master" ] || return 1
  for p in "${SENTINEL_PORTS[@]}"; do
    cli -p "$p" sentinel replicas "$MASTER_NAME" | tr -d '\r' |
      awk -v want="$replica" '
        prev == "name" { name = $0 }
        prev == "flags" && name == want && $0 == "slave" { found = 1 }
        { prev = $0 }
        END { exit !found }' || return 1
    cli -p "$p" sentinel ckquorum "$MASTER_NAME" | grep -q '^OK' || return 1
  done
}

# The server on $1 is a replica of the one on $2, with the link up.
replicating() {
  [ "$(info_field "$1" 'info replication' role)" = slave ] &&
    [ "$(info_field "$1" 'info replication' master_port)" = "$2" ] &&
    [ "$(info_field "$1" 'info replication' master_link_status)" = up ]
}

start_sentinel() {
  local t0 dir=$REDIS_CI_DIR/sentinel p addrs=() conf
  t0=$(now_ms)
  MODE_DIR=$dir
  fresh_dir "$dir" "$SENTINEL_MASTER_PORT" "$SENTINEL_REPLICA_PORT" "${SENTINEL_PORTS[@]}"
  # No 5 s wait for more replicas before a (diskless) full sync: either
  # server may be the master that the other syncs from.
  start_server "$dir/$SENTINEL_MASTER_PORT" "$SENTINEL_MASTER_PORT" --save '' --appendonly no \
    --repl-diskless-sync-delay 0
  start_server "$dir/$SENTINEL_REPLICA_PORT" "$SENTINEL_REPLICA_PORT" --save '' --appendonly no \
    --repl-diskless-sync-delay 0 --replicaof "$HOST" "$SENTINEL_MASTER_PORT"
  wait_for "redis-server on port $SENTINEL_MASTER_PORT does not answer PING" pong "$SENTINEL_MASTER_PORT"
  wait_for "the replica on $SENTINEL_REPLICA_PORT does not replicate from $SENTINEL_MASTER_PORT" \
    replicating "$SENTINEL_REPLICA_PORT" "$SENTINEL_MASTER_PORT"
  for p in "${SENTINEL_PORTS[@]}"; do
    # Sentinel rewrites its config file (state, discovered peers): one each,
    # in the data dir.
    conf=$dir/$p/sentinel.conf
    mkdir -p "$dir/$p"
    cat >"$conf" <<EOF
# Generated by .ci/redis.sh; sentinel rewrites this file.
sentinel monitor $MASTER_NAME $HOST $SENTINEL_MASTER_PORT 2
sentinel down-after-milliseconds $MASTER_NAME 2000
sentinel failover-timeout $MASTER_NAME 10000
sentinel parallel-syncs $MASTER_NAME 1
EOF
    start_server "$dir/$p" "$p" "$conf" --sentinel
    addrs+=("$HOST:$p")
  done
  for p in "${SENTINEL_PORTS[@]}"; do
    wait_for "sentinel on port $p does not answer PING" pong "$p"
  done
  wait_for "the sentinels do not all see master $HOST:$SENTINEL_MASTER_PORT, replica $HOST:$SENTINEL_REPLICA_PORT and a quorum" \
    sentinels_see "$HOST:$SENTINEL_MASTER_PORT" "$HOST:$SENTINEL_REPLICA_PORT"
  log "sentinel setup ready in $(secs_since "$t0") s (logs in $dir/<port>/redis.log)"
  local IFS=,
  echo "REDIS_SENTINEL_ADDRS=${addrs[*]}"
  echo "REDIS_SENTINEL_MASTER=$MASTER_NAME"
}

failover() {
  local t0 dir=$REDIS_CI_DIR/sentinel old new out
  t0=$(now_ms)
  if [ -z "$(our_pids "$dir")" ]; then
    MODE_DIR=/nonexistent # old logs would only confuse
    die "the sentinel topology is not running (run $0 start-sentinel first)"
  fi
  MODE_DIR=$dir
  old=$(sentinels_master) || die "the sentinels do not agree on a master for $MASTER_NAME (is start-sentinel running?)"
  case $old in
    "$HOST:$SENTINEL_MASTER_PORT") new=$HOST:$SENTINEL_REPLICA_PORT ;;
    "$HOST:$SENTINEL_REPLICA_PORT") new=$HOST:$SENTINEL_MASTER_PORT ;;
    *) die "the sentinels name $old as master, which is not one of ours" ;;
  esac
  # A failover right after another can find the replica not yet reconfigured.
  wait_for "the sentinels do not see $new as a healthy replica of $old" sentinels_see "$old" "$new"
  out=$(cli -p "${SENTINEL_PORTS[0]}" sentinel failover "$MASTER_NAME" | tr -d '\r')
  [ "$out" = OK ] || die "SENTINEL FAILOVER $MASTER_NAME on port ${SENTINEL_PORTS[0]} answered: $out"
  log "failover from $old to $new requested"
  wait_for "the sentinels do not report $new as master of $MASTER_NAME" eval '[ "$(sentinels_master)" = "$new" ]'
  wait_for "$new does not report role master" eval '[ "$(info_field "${new##*:}" "info replication" role)" = master ]'
  # Sentinel itself turns the old master into a replica of the new one only
  # some 10-12 s later (it waits 4 publish periods after an INFO showing the
  # stale role); until then there would be two masters. Do what it would do,
  # now, so that the script returns a settled master/replica pair.
  if [ "$(info_field "${old##*:}" 'info replication' master_port)" != "${new##*:}" ]; then
    out=$(cli -p "${old##*:}" replicaof "$HOST" "${new##*:}" | tr -d '\r')
    [[ $out == OK* ]] || die "REPLICAOF $HOST ${new##*:} on the old master $old answered: $out"
  fi
  wait_for "the old master $old does not replicate from $new" replicating "${old##*:}" "${new##*:}"
  wait_for "the sentinels do not see $old as a healthy replica of $new" sentinels_see "$new" "$old"
  log "failover done in $(secs_since "$t0") s: $old -> $new"
  echo "REDIS_SENTINEL_MASTER_ADDR=$new"
}

# --- tls --------------------------------------------------------------------

# In $1: ca.pem/ca.key, server.pem/server.key (SAN IP:127.0.0.1 and
# DNS:localhost) and client.pem/client.key (CN=mh-redis-client), all signed
# by ca.pem; keys unencrypted PKCS#8, which Go's tls.LoadX509KeyPair reads.
make_certs() {
  local d=$1
  command -v openssl >/dev/null 2>&1 || die "openssl not found; it makes the test certificates"
  # One && chain: set -e does not apply inside an if condition.
  if ! (
    cd "$d" &&
      printf '%s\n' '[req]' 'distinguished_name = dn' '[dn]' '[ext]' \
        'basicConstraints = critical, CA:TRUE' 'keyUsage = critical, keyCertSign, cRLSign' \
        'subjectKeyIdentifier = hash' >ca.cnf &&
      openssl req -x509 -new -config ca.cnf -extensions ext -newkey rsa:2048 -nodes -sha256 \
        -days 3650 -subj "/CN=mailchimp-heap CI Redis CA" -keyout ca.key -out ca.pem &&
      leaf_cert server localhost 'extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:localhost, IP:127.0.0.1' &&
      leaf_cert client mh-redis-client 'extendedKeyUsage = clientAuth' &&
      openssl verify -CAfile ca.pem server.pem client.pem
  ) >"$d/openssl.log" 2>&1; then
    die "openssl could not make the test certificates in $d"
  fi
}

tls_pong() {
  timeout 5 redis-cli -h "$HOST" -p "$TLS_PORT" --tls --cacert "$1/ca.pem" \
    --cert "$1/client.pem" --key "$1/client.key" ping 2>&1 | grep -q '^PONG$'
}

start_tls() {
  local t0 dir=$REDIS_CI_DIR/tls out
  t0=$(now_ms)
  MODE_DIR=$dir
  # Without TLS support (BUILD_TLS=no) redis-server rejects tls-port as a bad
  # directive; with it, port 0 and tls-port 0 means "nowhere to listen".
  out=$(cd / && timeout 10 redis-server --port 0 --tls-port 0 --save '' 2>&1 9>&- || true)
  if grep -q 'Bad directive' <<<"$out" || ! grep -q 'not listen anywhere' <<<"$out"; then
    printf '%s\n' "$out" >&2
    die "$(command -v redis-server) ($(redis-server --version | cut -d' ' -f3)) was built without TLS support: it does not accept --tls-port"
  fi
  fresh_dir "$dir" "$TLS_PORT"
  make_certs "$dir"
  start_server "$dir/server" 0 --tls-port "$TLS_PORT" --save '' --appendonly no \
    --tls-cert-file "$dir/server.pem" --tls-key-file "$dir/server.key" \
    --tls-ca-cert-file "$dir/ca.pem" --tls-auth-clients yes
  wait_for "the TLS server on $TLS_PORT does not answer PING over TLS with the client certificate" tls_pong "$dir"
  # Without a client certificate the server must refuse.
  if timeout 5 redis-cli -h "$HOST" -p "$TLS_PORT" --tls --cacert "$dir/ca.pem" ping 2>&1 | grep -q '^PONG$'; then
    die "the TLS server on $TLS_PORT answers clients without a certificate (tls-auth-clients yes not in effect)"
  fi
  log "TLS server ready in $(secs_since "$t0") s (log $dir/server/redis.log)"
  echo "REDIS_URL=rediss://$HOST:$TLS_PORT/0"
  # The same under a name that cannot clobber the standalone server's
  # REDIS_URL when CI exports everything.
  echo "REDIS_TLS_URL=rediss://$HOST:$TLS_PORT/0"
  echo "REDIS_TLS_CA_FILE=$dir/ca.pem"
  echo "REDIS_TLS_CERT_FILE=$dir/client.pem"
  echo "REDIS_TLS_KEY_FILE=$dir/client.key"
}

# --- main -------------------------------------------------------------------

case "$REDIS_CI_DIR" in
  /*) ;;
  *) echo "redis.sh: REDIS_CI_DIR must be an absolute path, not '$REDIS_CI_DIR'" >&2; exit 2 ;;
esac
case "$REDIS_CI_DIR" in
  / | /tmp | /tmp/) echo "redis.sh: refusing REDIS_CI_DIR='$REDIS_CI_DIR'" >&2; exit 2 ;;
esac
REDIS_CI_DIR=${REDIS_CI_DIR%/}
mkdir -p "$REDIS_CI_DIR"
# One redis.sh at a time per directory (e.g. two CI steps racing).
exec 9>"$REDIS_CI_DIR/.lock"
flock -w 120 9 || die "another redis.sh has held $REDIS_CI_DIR/.lock for 120 s"

case "${1:-}" in
  start-cluster) need_tools; start_cluster ;;
  start-sentinel) need_tools; start_sentinel ;;
  failover) need_tools; failover ;;
  start-tls) need_tools; start_tls ;;
  stop)
    case "${2:-all}" in
      cluster | sentinel | tls) stop_under "$REDIS_CI_DIR/$2" ;;
      all) for m in cluster sentinel tls; do stop_under "$REDIS_CI_DIR/$m"; done ;;
      *) echo "usage: $0 stop [cluster|sentinel|tls]" >&2; exit 2 ;;
    esac
    ;;
  *) echo "usage: $0 start-cluster|start-sentinel|failover|start-tls|stop [cluster|sentinel|tls]" >&2; exit 2 ;;
esac
