#!/usr/bin/env bash
# The "other consumers" of heap.events: a Java one (Apache Avro's
# BinaryMessageDecoder, kafka-clients; .ci/consumers/java) and a Python one
# (fastavro and the avro package, confluent-kafka; .ci/consumers/python),
# which prove that what the pipeline writes is readable outside Go. Values
# are single-object encoded (c3 01 + CRC-64-AVRO fingerprint) or, in the
# registry mode, Confluent-framed (00 + schema id; the writer schema is
# fetched from $SCHEMA_REGISTRY_URL, see .ci/registry.sh).
#
#   .ci/consumers.sh build
#       build the Java jar and the Python venv (both cached; see below)
#   .ci/consumers.sh fingerprint SCHEMA.avsc...
#       the Parsing Canonical Form, fingerprint and single-object header from
#       Java, fastavro and avro; fails when Java's and fastavro's differ (both
#       implement the specification; the avro package's known deviation is
#       printed, not failed)
#   .ci/consumers.sh decode-kafka BOOTSTRAP TOPIC N
#       Java, then Python, each read TOPIC from the beginning of every
#       partition (read_committed) and decode the first N records (N = 0:
#       every record up to the end); fails unless both decode all of them
#   .ci/consumers.sh pipeline BOOTSTRAP
#       the pipeline itself writes the records: services/stack runs against
#       the brokers at BOOTSTRAP under a fresh TOPIC_PREFIX (ci-consumers-*.)
#       and posts its demo webhooks (DEMO=1); once Heap's stand-in has
#       received events and no more arrive for a few seconds the stack is
#       stopped, then decode-kafka reads every record of <prefix>heap.events
#       (SCHEMA_REGISTRY_URL, when set, is handed to the stack too)
#   .ci/consumers.sh decode-files PATH...
#       the same for values stored one per file (the file's bytes are the
#       Kafka record value); a directory means every file in it, in name order
#
# Each decoder ends with "java: decoded N, failed M" / "python: decoded N,
# failed M" (and the first failure's message); exit status 0 only when every
# step succeeded.
#
# Environment (defaults): CONSUMER_SCHEMAS (<repo>/schemas/heap_email_event.avsc
# then every <repo>/schemas/heap_email_event.v<n>.avsc: every known version of
# the value schema, space-separated, the reader schema first),
# SCHEMA_REGISTRY_URL (none: Confluent-framed values then fail),
# CONSUMER_EXPECT (unset; single-object or confluent: every record must be so
# encoded, e.g. confluent to prove the registry mode was in use),
# CONSUMER_TIMEOUT (60 s, per decoder, for Kafka), CONSUMER_VERBOSE (unset:
# only summaries; 1: one JSON line per record), CONSUMER_CACHE
# ($HOME/.cache/mailchimp-heap/consumers-java: the built jar, keyed by a hash
# of the Maven project), MH_PYTHON_VENV ($HOME/.cache/mailchimp-heap/venv).
set -euo pipefail
# Paths on the command line are the caller's; the scripts' own are found from here.
root=$(cd "$(dirname "$0")/.." && pwd)

JAVA_PROJECT=$root/.ci/consumers/java
PYTHON_DECODE=$root/.ci/consumers/python/decode.py
CONSUMER_CACHE=${CONSUMER_CACHE:-$HOME/.cache/mailchimp-heap/consumers-java}
CONSUMER_TIMEOUT=${CONSUMER_TIMEOUT:-60}
# The current schema (the reader), then every older version
# (schemas/heap_email_event.v<n>.avsc, newest first), as schemas/schemas.go lists them.
if [ -n "${CONSUMER_SCHEMAS:-}" ]; then
  read -r -a SCHEMAS <<<"$CONSUMER_SCHEMAS"
else
  SCHEMAS=("$root/schemas/heap_email_event.avsc")
  while IFS= read -r f; do SCHEMAS+=("$f"); done < <(
    find "$root/schemas" -maxdepth 1 -name 'heap_email_event.v*.avsc' | sort -V -r)
fi
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
PYTHON=${PYTHON:-python3}
# One short-lived JVM per step: small heap, quick start.
JAVA_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1)

log() { printf 'consumers.sh: %s\n' "$*" >&2; }
die() { printf 'consumers.sh: FAILED: %s\n' "$*" >&2; exit 1; }
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Sets JAR: the shaded jar of the Java project as it is now, built once per
# content (pom.xml and src/) and kept in $CONSUMER_CACHE. mvn runs offline
# first (everything in ~/.m2 after the first build), online only if that fails.
java_jar() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (the Java consumer needs Java 17+)"
  local hash
  hash=$(cd "$JAVA_PROJECT" && find pom.xml src -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
  JAR=$CONSUMER_CACHE/heap-consumers-$hash.jar
  [ -s "$JAR" ] && return 0
  command -v mvn >/dev/null 2>&1 || die "mvn not found; it builds the Java consumer"
  mkdir -p "$CONSUMER_CACHE"
  (
    exec 8>"$CONSUMER_CACHE/.lock"
    flock -w 900 8 || die "another build has held $CONSUMER_CACHE/.lock for 900 s"
    [ -s "$JAR" ] && exit 0
    local build t0 mvn_log=$CONSUMER_CACHE/mvn.log
    build=$(mktemp -d)
    t0=$(now_ms)
    local mvn=(mvn -q -B -Dstyle.color=never -f "$JAVA_PROJECT/pom.xml" "-Dconsumers.buildDir=$build" package)
    if ! timeout 600 "${mvn[@]}" -o >"$mvn_log" 2>&1; then
      log "building the Java consumer (mvn resolves its dependencies from Maven Central into ~/.m2 once)"
      if ! timeout 900 "${mvn[@]}" >"$mvn_log" 2>&1; then
        sed 's/\x1b\[[0-9;]*m//g' "$mvn_log" | tail -n 30 >&2
        rm -rf "$build"
        die "mvn could not build $JAVA_PROJECT (log $mvn_log)"
      fi
    fi
    cp "$build/heap-consumers.jar" "$JAR.tmp" && mv "$JAR.tmp" "$JAR"
    rm -rf "$build"
    log "built $JAR in $(secs_since "$t0") s"
  )
  [ -s "$JAR" ] || die "no jar at $JAR after the build"
}

java_run() { "$JAVA" "${JAVA_OPTS[@]}" -jar "$JAR" "$@"; }
python_run() { "$PYTHON" "$PYTHON_DECODE" "$@"; }

decode_opts() {
  local s
  DECODE_OPTS=()
  for s in "${SCHEMAS[@]}"; do
    [ -f "$s" ] || die "schema file $s not found"
    DECODE_OPTS+=(--schema "$s")
  done
  [ -n "${SCHEMA_REGISTRY_URL:-}" ] && DECODE_OPTS+=(--registry "$SCHEMA_REGISTRY_URL")
  [ -n "${CONSUMER_EXPECT:-}" ] && DECODE_OPTS+=(--expect "$CONSUMER_EXPECT")
  [ "${CONSUMER_VERBOSE:-}" = 1 ] || DECODE_OPTS+=(--quiet)
}

# Runs "$@" and records a failure without stopping: both consumers always run.
failed=()
step() {
  local name=$1 t0 rc=0
  shift
  t0=$(now_ms)
  "$@" || rc=$?
  echo "$name: exit $rc in $(secs_since "$t0") s"
  [ "$rc" = 0 ] || failed+=("$name (exit $rc)")
}

finish() {
  if [ ${#failed[@]} -gt 0 ]; then
    printf 'consumers.sh: FAILED: %s\n' "${failed[*]}" >&2
    exit 1
  fi
}

cmd_fingerprint() {
  [ $# -gt 0 ] || die "fingerprint needs a schema file"
  java_jar
  local jout pout f
  jout=$(java_run fingerprint "$@") || die "the Java fingerprint failed"
  pout=$(python_run fingerprint "$@") || die "the Python fingerprint failed"
  echo "$jout"
  echo "$pout"
  # Per schema: Java's and fastavro's canonical form and fingerprint must agree.
  for f in "$@"; do
    local jc jf pc pf
    jc=$(awk -v f="$f" '$0 == "java schema=" f { on = 1; next } /^java schema=/ { on = 0 } on && sub(/^java canonical=/, "") { print; exit }' <<<"$jout")
    jf=$(awk -v f="$f" '$0 == "java schema=" f { on = 1; next } /^java schema=/ { on = 0 } on && sub(/^java fingerprint64=/, "") { print; exit }' <<<"$jout")
    pc=$(awk -v f="$f" '$0 == "fastavro schema=" f { on = 1; next } /^fastavro schema=/ { on = 0 } on && sub(/^fastavro canonical=/, "") { print; exit }' <<<"$pout")
    pf=$(awk -v f="$f" '$0 == "fastavro schema=" f { on = 1; next } /^fastavro schema=/ { on = 0 } on && sub(/^fastavro fingerprint64=/, "") { print; exit }' <<<"$pout")
    [ -n "$jf" ] && [ -n "$pf" ] || die "$f: a fingerprint is missing from the output above"
    [ "$jc" = "$pc" ] || die "$f: Java's and fastavro's Parsing Canonical Forms differ"
    [ "$jf" = "$pf" ] || die "$f: Java's fingerprint $jf and fastavro's $pf differ"
    echo "$f: Java and fastavro agree: fingerprint64=$jf header=c301$(java_header "$jf")"
  done
}

# The 8 little-endian bytes of a 16-digit hex fingerprint.
java_header() { local h=$1 i out=; for ((i = 14; i >= 0; i -= 2)); do out+=${h:i:2}; done; echo "$out"; }

cmd_decode_kafka() {
  [ $# = 3 ] || die "usage: decode-kafka BOOTSTRAP TOPIC N"
  local bootstrap=$1 topic=$2 n=$3
  [[ $n =~ ^[0-9]+$ ]] || die "N must be a number, not $n"
  java_jar
  decode_opts
  step "java consumer ($topic at $bootstrap)" java_run decode-kafka "${DECODE_OPTS[@]}" \
    --bootstrap "$bootstrap" --topic "$topic" --count "$n" --timeout "$CONSUMER_TIMEOUT"
  step "python consumer ($topic at $bootstrap)" python_run decode-kafka "${DECODE_OPTS[@]}" \
    --bootstrap "$bootstrap" --topic "$topic" --count "$n" --timeout "$CONSUMER_TIMEOUT"
  finish
}

cmd_pipeline() {
  [ $# = 1 ] || die "usage: pipeline BOOTSTRAP"
  local bootstrap=$1 work prefix pid n last=-1 stable=0 t0 deadline
  java_jar
  work=$(mktemp -d)
  prefix=ci-consumers-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n').
  t0=$(now_ms)
  (cd "$root" && go build -o "$work/stack" ./services/stack) || die "go build ./services/stack failed"
  echo "built services/stack in $(secs_since "$t0") s; running it on $bootstrap with TOPIC_PREFIX=$prefix"
  t0=$(now_ms)
  # Its own embedded Redis, demo source and Heap stand-in, whatever the
  # caller's environment holds: nothing an earlier suite left can change it.
  (cd "$work" && exec env -u REDIS_URL -u REDIS_SENTINEL_ADDRS -u REDIS_CLUSTER_ADDRS -u SOURCES_FILE \
    -u HEAP_API_URL -u KAFKA_TLS_ENABLED -u KAFKA_SASL_MECHANISM KAFKA_BROKERS="$bootstrap" TOPIC_PREFIX="$prefix" KAFKA_CREATE_TOPICS=true \
    TOPIC_PARTITIONS=3 DEMO=1 DATA_DIR="$work/data" INGRESS_ADDR=127.0.0.1:0 ADMIN_ADDR=127.0.0.1:0 \
    INSTANCE_ID=ci-consumers LOG_LEVEL=info "$work/stack" </dev/null >"$work/stack.log" 2>&1) &
  pid=$!
  deadline=$((SECONDS + ${CONSUMER_PIPELINE_TIMEOUT:-120}))
  # Done once events have arrived and the count held for 5 s.
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$work/stack.log" >&2
      die "services/stack exited (log above)"
    fi
    n=$(grep -c '"heap received event"' "$work/stack.log" || true)
    if [ "$n" -gt 0 ] && [ "$n" = "$last" ]; then
      stable=$((stable + 1))
      [ $stable -ge 5 ] && break
    else
      stable=0
    fi
    last=$n
    if [ $SECONDS -ge $deadline ]; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      tail -n 30 "$work/stack.log" >&2
      die "the stack delivered ${n:-no} events to Heap's stand-in within ${CONSUMER_PIPELINE_TIMEOUT:-120} s (log above)"
    fi
    sleep 1
  done
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$work/stack" "$work/data"
  echo "the stack delivered $n events to Heap's stand-in in $(secs_since "$t0") s (log $work/stack.log)"
  cmd_decode_kafka "$bootstrap" "${prefix}heap.events" 0
}

cmd_decode_files() {
  [ $# -gt 0 ] || die "decode-files needs a file or directory"
  java_jar
  decode_opts
  step "java decoder" java_run decode-files "${DECODE_OPTS[@]}" "$@"
  step "python decoder" python_run decode-files "${DECODE_OPTS[@]}" "$@"
  finish
}

cmd_build() {
  local t0
  t0=$(now_ms)
  java_jar
  echo "java consumer: $JAR ($(secs_since "$t0") s; $("$JAVA" -version 2>&1 | head -n 1))"
  t0=$(now_ms)
  local out
  out=$(python_run fingerprint "${SCHEMAS[0]}") || die "the Python consumer does not run"
  echo "${out%%$'\n'*}"
  echo "python consumer: venv ${MH_PYTHON_VENV:-$HOME/.cache/mailchimp-heap/venv} ($(secs_since "$t0") s)"
}

case "${1:-}" in
  build) shift; cmd_build ;;
  fingerprint) shift; cmd_fingerprint "$@" ;;
  decode-kafka) shift; cmd_decode_kafka "$@" ;;
  decode-files) shift; cmd_decode_files "$@" ;;
  pipeline) shift; cmd_pipeline "$@" ;;
  *)
    echo "usage: $0 build | fingerprint SCHEMA... | decode-kafka BOOTSTRAP TOPIC N | decode-files PATH... | pipeline BOOTSTRAP" >&2
    exit 2
    ;;
esac
