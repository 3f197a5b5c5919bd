#!/usr/bin/env bash
# A real Apache Kafka 4.x broker for the end-to-end and exactly-once suites:
# one KRaft node (broker+controller) on loopback. Maven Central is the only
# artifact source reachable from CI (no Docker, no kafka.apache.org), so the
# broker and its runtime jars come from there through mvn, cached outside the
# clone so that only the first run on a machine pays for the download.
#
#   .ci/kafka.sh start    start (fresh data) and wait until the broker answers;
#                         a no-op when ours is already running and answering
#   .ci/kafka.sh restart  stop, then start on the same data (no reformat)
#   .ci/kafka.sh stop     SIGTERM, then SIGKILL after KAFKA_STOP_TIMEOUT
#   .ci/kafka.sh status   exit 0 when ours is running and answering
#
# The same broker has three client listeners, for the security suites:
#   PLAINTEXT 127.0.0.1:KAFKA_PORT       no authentication; its principal,
#                                        User:ANONYMOUS, is a super user, so
#                                        plaintext clients see no ACLs at all
#   SASL_SSL  127.0.0.1:KAFKA_SASL_PORT  TLS + SASL SCRAM-SHA-512,
#                                        SCRAM-SHA-256 or PLAIN; users admin
#                                        (super user) and mh (no ACLs: denied
#                                        everything until a test grants some)
#   SSL       127.0.0.1:KAFKA_MTLS_PORT  mutual TLS (client certificate
#                                        required); the principal is the
#                                        certificate's CN: User:mh-mtls
# with StandardAuthorizer and allow.everyone.if.no.acl.found=false. The
# controller listener stays PLAINTEXT (ANONYMOUS, a super user). A fresh start
# makes a CA, the broker's certificate (SAN DNS:localhost, IP:127.0.0.1), a
# client certificate (CN=mh-mtls) and an unrelated CA in $KAFKA_DIR/tls;
# restart reuses them, and the SCRAM users live in the metadata log.
#
# start/restart end stdout with KAFKA_BROKERS=127.0.0.1:<port>, preceded by
# KAFKA_SASL_BROKERS, KAFKA_MTLS_BROKERS and KAFKA_TEST_* lines (CA, client
# certificate and key files, users, passwords, mTLS principal). Any failure
# prints the reason and the broker log tail on stderr and exits non-zero.
#
# Environment (defaults): KAFKA_VERSION (first of 4.1.1 4.0.1 4.2.0 that resolves),
# KAFKA_CACHE ($HOME/.cache/mailchimp-heap/kafka-<version>),
# KAFKA_DIR (/tmp/mailchimp-heap-kafka), KAFKA_PORT (19092),
# KAFKA_CONTROLLER_PORT (19093), KAFKA_SASL_PORT (19094), KAFKA_MTLS_PORT
# (19095), KAFKA_START_TIMEOUT (120 s), KAFKA_STOP_TIMEOUT (30 s),
# KAFKA_KEEP_DATA (unset: start wipes old data and makes new certificates).
set -euo pipefail

KAFKA_DIR=${KAFKA_DIR:-/tmp/mailchimp-heap-kafka}
KAFKA_PORT=${KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-19093}
KAFKA_SASL_PORT=${KAFKA_SASL_PORT:-19094}
KAFKA_MTLS_PORT=${KAFKA_MTLS_PORT:-19095}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-120}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
# 4.1.1 (as in docker-compose.yml) first; the others are fallbacks should it
# ever stop resolving. All three were checked with franz-go transactions.
KAFKA_VERSIONS=${KAFKA_VERSION:-4.1.1 4.0.1 4.2.0}

BOOTSTRAP=127.0.0.1:$KAFKA_PORT
SASL_BOOTSTRAP=127.0.0.1:$KAFKA_SASL_PORT
MTLS_BOOTSTRAP=127.0.0.1:$KAFKA_MTLS_PORT
# Test credentials, not secrets: loopback only, printed for the test suites.
ADMIN_USER=admin ADMIN_PASSWORD=admin-secret
TEST_USER=mh TEST_PASSWORD=mh-secret
MTLS_CN=mh-mtls
TLS_DIR=$KAFKA_DIR/tls
KEYSTORE_PASSWORD=mailchimp-heap-ci
DATA_DIR=$KAFKA_DIR/data
LOG_DIR=$KAFKA_DIR/logs
PID_FILE=$KAFKA_DIR/kafka.pid
CONFIG=$KAFKA_DIR/server.properties
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
# Admin tools only send a request or two: a small, quickly started JVM.
TOOL_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "-Dlog4j2.configurationFile=$KAFKA_DIR/tools-log4j2.xml")

log() { printf 'kafka.sh: %s\n' "$*" >&2; }

# The reason, then what the broker said, so CI output alone explains a failure.
die() {
  printf 'kafka.sh: FAILED: %s\n' "$*" >&2
  local f
  for f in "$LOG_DIR/server.log" "$LOG_DIR/stdout.log" "$LOG_DIR/tools.log" "$LOG_DIR/openssl.log"; do
    if [ -s "$f" ]; then
      printf -- '--- last lines of %s\n' "$f" >&2
      tail -n 40 "$f" >&2
    fi
  done
  exit 1
}

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- jars -------------------------------------------------------------------

# Downloads kafka_2.13 (the broker) and kafka-tools (the admin command classes)
# with their runtime dependencies into $2/libs. The published poms carry no
# SLF4J binding (and, without Connect, not always log4j2 itself), so the
# log4j2 jars matching the resolved slf4j-api are added in a second step;
# otherwise the broker would log nowhere.
fetch_jars() {
  local version=$1 cache=$2
  local tmp=$cache/libs.tmp mvn_log=$cache/mvn.log
  rm -rf "$tmp" "$cache/.complete"
  cat >"$cache/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by .ci/kafka.sh: only used to resolve the broker's jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.mailchimp-heap</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>$version</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$version</version>
      <!-- Connect is only for the connect-plugin-path tool; leaving it out
           halves the download and avoids its jars, some of which Maven
           Central here does not hold for every release (4.0.1). -->
      <exclusions>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-api</artifactId></exclusion>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-json</artifactId></exclusion>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-transforms</artifactId></exclusion>
      </exclusions>
    </dependency>
  </dependencies>
</project>
EOF
  : >"$mvn_log"
  mvn_copy "$cache/pom.xml" "$tmp" "$mvn_log" "org.apache.kafka:kafka_2.13:$version" -DincludeScope=runtime || return 1
  local log4j slf4j binding extra=()
  log4j=$(find "$tmp" -name 'log4j-api-*.jar' -printf '%f\n' | sed 's/^log4j-api-//; s/\.jar$//' | head -n 1)
  slf4j=$(find "$tmp" -name 'slf4j-api-*.jar' -printf '%f\n' | sed 's/^slf4j-api-//; s/\.jar$//' | head -n 1)
  if [ -z "$slf4j" ]; then
    log "kafka $version resolved without slf4j-api; cannot set up logging"
    return 1
  fi
  if [ -z "$log4j" ]; then
    # Some releases' poms pull log4j2 in only through Connect: use the
    # version that Kafka 4.0 and 4.1 ship.
    log4j=2.24.3
    extra+=("org.apache.logging.log4j:log4j-api:$log4j")
  fi
  [ -n "$(find "$tmp" -name 'log4j-core-*.jar')" ] || extra+=("org.apache.logging.log4j:log4j-core:$log4j")
  case $slf4j in
    1.*) binding='log4j-slf4j-impl' ;;
    *) binding='log4j-slf4j2-impl' ;;
  esac
  extra+=("org.apache.logging.log4j:$binding:$log4j")
  # One more pom, non-transitive, so that these cannot change what was resolved.
  {
    echo '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
    echo '  <groupId>local.mailchimp-heap</groupId><artifactId>kafka-logging</artifactId><version>1</version><packaging>pom</packaging>'
    echo '  <dependencies>'
    local a g n v
    for a in "${extra[@]}"; do
      IFS=: read -r g n v <<<"$a"
      echo "    <dependency><groupId>$g</groupId><artifactId>$n</artifactId><version>$v</version>"
      echo '      <exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions></dependency>'
    done
    echo '  </dependencies>'
    echo '</project>'
  } >"$cache/logging-pom.xml"
  mvn_copy "$cache/logging-pom.xml" "$tmp" "$mvn_log" "the log4j2 jars (${extra[*]})" -DincludeScope=runtime || return 1
  rm -rf "$cache/libs"
  mv "$tmp" "$cache/libs" && echo "$version" >"$cache/.complete"
}

# Sets VERSION and LIBS: the first candidate version already cached, or else
# the first that mvn resolves.
resolve_kafka() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (Kafka 4.x needs Java 17+)"
  local jv
  jv=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
  [ "${jv:-0}" -ge 17 ] || die "Kafka 4.x needs Java 17+, $JAVA is version ${jv:-unknown}"
  local v cache t0
  for v in $KAFKA_VERSIONS; do
    cache=${KAFKA_CACHE:-$HOME/.cache/mailchimp-heap/kafka-$v}
    if [ "$(cat "$cache/.complete" 2>/dev/null)" = "$v" ] && [ -f "$cache/libs/kafka_2.13-$v.jar" ]; then
      VERSION=$v LIBS=$cache/libs
      return 0
    fi
  done
  command -v mvn >/dev/null 2>&1 || die "mvn not found; it is needed once to download Kafka"
  for v in $KAFKA_VERSIONS; do
    cache=${KAFKA_CACHE:-$HOME/.cache/mailchimp-heap/kafka-$v}
    mkdir -p "$cache"
    t0=$(now_ms)
    log "downloading kafka $v and its runtime jars from Maven Central into $cache"
    # Two starts sharing the cache must not download over each other.
    if (exec 8>"$cache/.lock"; flock -w 900 8 &&
        { [ "$(cat "$cache/.complete" 2>/dev/null)" = "$v" ] || fetch_jars "$v" "$cache"; }); then
      log "kafka $v jars ready in $(secs_since "$t0") s ($(find "$cache/libs" -name '*.jar' | wc -l) jars)"
      VERSION=$v LIBS=$cache/libs
      return 0
    fi
    log "kafka $v is unavailable, trying the next candidate"
  done
  die "no Kafka version out of '$KAFKA_VERSIONS' could be resolved with mvn (see $cache/mvn.log)"
}

# --- certificates -----------------------------------------------------------

# A self-signed CA: $1.pem and $1.key, subject CN=$2.
make_ca() {
  cat >"$1.cnf" <<EOF
[req]
distinguished_name = dn
[dn]
[ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
  openssl req -x509 -new -config "$1.cnf" -extensions ext -newkey rsa:2048 -nodes -sha256 \
    -days 3650 -subj "/CN=$2" -keyout "$1.key" -out "$1.pem"
}

# $TLS_DIR: ca.pem/ca.key, the broker's PKCS12 keystore (broker.p12, with the
# CA in its chain), client.pem/client.key (CN=mh-mtls, for the mTLS listener;
# client.p12 holds the same for Java clients) and other-ca.pem/other-ca.key, a
# CA that signed nothing here.
make_tls() {
  command -v openssl >/dev/null 2>&1 || die "openssl not found; it makes the test certificates"
  local tmp=$TLS_DIR.tmp
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # One && chain: set -e does not apply inside an if condition.
  if ! (
    cd "$tmp" &&
      make_ca ca "mailchimp-heap CI Kafka CA" &&
      make_ca other-ca "mailchimp-heap CI unrelated CA" &&
      leaf_cert broker localhost 'extendedKeyUsage = serverAuth, clientAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1' &&
      leaf_cert client "$MTLS_CN" 'extendedKeyUsage = clientAuth' &&
      openssl pkcs12 -export -name broker -in broker.pem -inkey broker.key -certfile ca.pem \
        -passout "pass:$KEYSTORE_PASSWORD" -out broker.p12 &&
      # The same client certificate for Java clients (the CLI tools).
      openssl pkcs12 -export -name client -in client.pem -inkey client.key -certfile ca.pem \
        -passout "pass:$KEYSTORE_PASSWORD" -out client.p12 &&
      openssl verify -CAfile ca.pem broker.pem client.pem
  ) >"$LOG_DIR/openssl.log" 2>&1; then
    die "openssl could not make the test certificates in $tmp"
  fi
  rm -rf "$TLS_DIR"
  mv "$tmp" "$TLS_DIR"
  log "made a test CA, broker and client (CN=$MTLS_CN) certificates in $TLS_DIR"
}

tls_complete() {
  local f
  for f in ca.pem other-ca.pem client.pem client.key client.p12 broker.p12; do
    [ -s "$TLS_DIR/$f" ] || return 1
  done
}

# --- process ----------------------------------------------------------------

# Our broker's pid: the pid file if it still names our broker, else a process
# whose command line holds our config path (pid file lost), else nothing.
broker_pid() {
  local pid cmd p
  pid=$(cat "$PID_FILE" 2>/dev/null || true)
  if [ -n "$pid" ] && cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) &&
     [[ $cmd == *kafka.Kafka\ "$CONFIG"* ]]; then
    echo "$pid"
    return 0
  fi
  for p in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    if [[ $cmd == *kafka.Kafka\ "$CONFIG"* ]]; then
      echo "${p#/proc/}"
      return 0
    fi
  done
  return 1
}

# A real Kafka request: the admin client bootstraps with a Metadata request
# and DescribeFeatures reads the finalized feature levels from an ApiVersions
# response. The broker only processes requests once it is unfenced, so an
# answer means it is ready for topics and transactions. Output: $KAFKA_DIR/features.txt.
probe() {
  timeout 30 "$JAVA" "${TOOL_OPTS[@]}" -cp "$LIBS/*" org.apache.kafka.tools.FeatureCommand \
    --bootstrap-server "$BOOTSTRAP" --command-config "$KAFKA_DIR/tools.properties" describe \
    >"$KAFKA_DIR/features.txt" 2>>"$LOG_DIR/tools.log" &&
    grep -q 'Feature: metadata.version' "$KAFKA_DIR/features.txt"
}

# The secured listeners answer: admin authenticates with SCRAM-SHA-512 over
# SASL_SSL (verifying the broker's certificate against our CA) and lists the
# ACLs, which only works with the authorizer on; and the mTLS listener
# completes a handshake with our client certificate.
probe_secured() {
  timeout 30 "$JAVA" "${TOOL_OPTS[@]}" -cp "$LIBS/*" org.apache.kafka.tools.AclCommand \
    --bootstrap-server "$SASL_BOOTSTRAP" --command-config "$KAFKA_DIR/client-admin-sasl.properties" --list \
    >"$KAFKA_DIR/acls.txt" 2>>"$LOG_DIR/tools.log" || {
    cat "$KAFKA_DIR/acls.txt" >>"$LOG_DIR/tools.log"
    echo "admin over SASL_SSL (SCRAM-SHA-512) could not list ACLs on $SASL_BOOTSTRAP"
    return 1
  }
  timeout 10 openssl s_client -connect "$MTLS_BOOTSTRAP" -verify_return_error -verify_ip 127.0.0.1 \
    -CAfile "$TLS_DIR/ca.pem" -cert "$TLS_DIR/client.pem" -key "$TLS_DIR/client.key" \
    </dev/null >"$KAFKA_DIR/mtls-handshake.txt" 2>&1 || {
    tail -n 20 "$KAFKA_DIR/mtls-handshake.txt" >>"$LOG_DIR/tools.log"
    echo "no verified TLS handshake with the client certificate on $MTLS_BOOTSTRAP"
    return 1
  }
}

# Waits (at most $1 s) for probe_secured, else dies with its reason (after
# stopping the broker when $2 is "stop"). $3: a hint added to the reason.
wait_secured() {
  local until=$((SECONDS + $1)) why
  until why=$(probe_secured); do
    if [ $SECONDS -ge $until ]; then
      if [ "${2:-}" = stop ]; then
        stop_broker >/dev/null 2>&1 || true
      fi
      die "$why${3:+ ($3)}"
    fi
    sleep 1
  done
}

# For a broker or data that an older kafka.sh (no secured listeners, no SCRAM
# users) may have left.
OLD_DATA_HINT="left by a kafka.sh without secured listeners? then run: $0 stop; $0 start"


feature_level() {
  awk -v f="$1" '$1 == "Feature:" && $2 == f {
    for (i = 3; i <= NF; i++) if ($i == "FinalizedVersionLevel:") print $(i + 1) }' "$KAFKA_DIR/features.txt"
}

write_configs() {
  mkdir -p "$DATA_DIR" "$LOG_DIR"
  cat >"$CONFIG" <<EOF
# Generated by .ci/kafka.sh: single-node KRaft (broker+controller) for tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT,SSL://127.0.0.1:$KAFKA_MTLS_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT,SSL://127.0.0.1:$KAFKA_MTLS_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER

# Security. PLAINTEXT (clients and controller) authenticates nobody: its
# principal User:ANONYMOUS is a super user, so the plaintext suites see no ACLs.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS;User:$ADMIN_USER
allow.everyone.if.no.acl.found=false
# TLS for SASL_SSL and SSL: the broker's key and certificate, and the CA that
# client certificates must chain to.
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS_DIR/broker.p12
ssl.keystore.password=$KEYSTORE_PASSWORD
ssl.key.password=$KEYSTORE_PASSWORD
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
ssl.client.auth=none
# SSL is the mTLS listener: a certificate is required and CN=<name> is User:<name>.
listener.name.ssl.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]+).*\$/\$1/,DEFAULT
# SASL_SSL: SCRAM users were added at format time (kafka-storage --add-scram);
# PLAIN users are the user_<name> entries below.
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$ADMIN_USER="$ADMIN_PASSWORD" user_$TEST_USER="$TEST_PASSWORD";

log.dirs=$DATA_DIR
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
EOF
  # Kafka 4.x logs through log4j2: files only, so nothing reaches the caller's
  # terminal (or the \$(...) that CI reads the broker address from).
  cat >"$KAFKA_DIR/log4j2.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <RollingFile name="server" fileName="$LOG_DIR/server.log" filePattern="$LOG_DIR/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <SizeBasedTriggeringPolicy size="100MB"/>
      <DefaultRolloverStrategy max="2"/>
    </RollingFile>
    <RollingFile name="stateChange" fileName="$LOG_DIR/state-change.log" filePattern="$LOG_DIR/state-change.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <SizeBasedTriggeringPolicy size="100MB"/>
      <DefaultRolloverStrategy max="2"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="server"/></Root>
    <Logger name="state.change.logger" level="INFO" additivity="false"><AppenderRef ref="stateChange"/></Logger>
    <Logger name="kafka.request.logger" level="WARN"/>
  </Loggers>
</Configuration>
EOF
  cat >"$KAFKA_DIR/tools-log4j2.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="tools" fileName="$LOG_DIR/tools.log" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers><Root level="WARN"><AppenderRef ref="tools"/></Root></Loggers>
</Configuration>
EOF
  # Fail a probe fast instead of retrying inside one JVM.
  printf 'request.timeout.ms=5000\ndefault.api.timeout.ms=10000\n' >"$KAFKA_DIR/tools.properties"
  # Client settings for the CLI tools on the secured listeners (also handy by
  # hand: --command-config $KAFKA_DIR/client-*.properties).
  local user pass
  for user in "$ADMIN_USER" "$TEST_USER"; do
    pass=$ADMIN_PASSWORD
    [ "$user" = "$ADMIN_USER" ] || pass=$TEST_PASSWORD
    cat >"$KAFKA_DIR/client-$user-sasl.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$user" password="$pass";
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
  done
  cat >"$KAFKA_DIR/client-mtls.properties" <<EOF
security.protocol=SSL
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS_DIR/client.p12
ssl.keystore.password=$KEYSTORE_PASSWORD
ssl.key.password=$KEYSTORE_PASSWORD
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

# Formats only empty storage, so restart keeps topics, offsets and
# transactions. transaction.version=2 (KIP-890) is already the 4.x default;
# naming it makes a format that cannot provide it fail loudly. Share groups
# are off by default in 4.1 but on in 4.2, hence share.version=0 wherever the
# release knows the feature (not 4.0).
format_storage() {
  if [ -f "$DATA_DIR/meta.properties" ]; then
    return 0
  fi
  local id mapping=${LIBS%/libs}/version-mapping.txt
  local features=(--feature transaction.version=2)
  if [ ! -s "$mapping" ]; then
    if ! "$JAVA" "${TOOL_OPTS[@]}" -cp "$LIBS/*" kafka.tools.StorageTool version-mapping \
        >"$mapping.$$" 2>>"$LOG_DIR/tools.log"; then
      rm -f "$mapping.$$"
      die "kafka.tools.StorageTool version-mapping failed"
    fi
    mv "$mapping.$$" "$mapping"
  fi
  grep -q '^share.version=' "$mapping" && features+=(--feature share.version=0)
  # A random base64url cluster id; one starting with '-' would read as an option.
  id=-
  while [[ $id == -* ]]; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
  done
  log "formatting KRaft storage in $DATA_DIR (cluster id $id, ${features[*]}, SCRAM users $ADMIN_USER and $TEST_USER)"
  # The SCRAM users go into the metadata log with the bootstrap records, so
  # they exist before the broker first answers (and survive restarts).
  local scram=() mech
  for mech in SCRAM-SHA-512 SCRAM-SHA-256; do
    scram+=(--add-scram "$mech=[name=$ADMIN_USER,password=$ADMIN_PASSWORD]"
      --add-scram "$mech=[name=$TEST_USER,password=$TEST_PASSWORD]")
  done
  "$JAVA" "${TOOL_OPTS[@]}" -cp "$LIBS/*" kafka.tools.StorageTool format \
    --config "$CONFIG" --cluster-id "$id" "${features[@]}" "${scram[@]}" \
    >"$LOG_DIR/format.log" 2>&1 ||
    { cat "$LOG_DIR/format.log" >&2; die "formatting KRaft storage failed"; }
}

# Prints why the finalized features do not suit the test suites, if they don't.
features_wrong() {
  local tv sv
  tv=$(feature_level transaction.version)
  sv=$(feature_level share.version)
  if [ "$tv" != 2 ]; then
    echo "transaction.version is '${tv:-absent}', the exactly-once suites need 2"
  elif [ "${sv:-0}" != 0 ]; then
    echo "share.version is $sv, share groups should be off"
  else
    return 1
  fi
}

summary() {
  local t0=$1 pid=$2
  echo "kafka $VERSION (KRaft broker+controller, node 1) pid $pid, data $DATA_DIR, log $LOG_DIR/server.log"
  echo "features: $(awk '$1 == "Feature:" { for (i = 3; i <= NF; i++) if ($i == "FinalizedVersionLevel:") printf "%s=%s ", $2, $(i + 1) }' "$KAFKA_DIR/features.txt" | sed 's/ $//')"
  echo "kafka startup took $(secs_since "$t0") s"
  echo "KAFKA_SASL_BROKERS=$SASL_BOOTSTRAP"
  echo "KAFKA_MTLS_BROKERS=$MTLS_BOOTSTRAP"
  echo "KAFKA_TEST_CA_FILE=$TLS_DIR/ca.pem"
  echo "KAFKA_TEST_OTHER_CA_FILE=$TLS_DIR/other-ca.pem"
  echo "KAFKA_TEST_CLIENT_CERT_FILE=$TLS_DIR/client.pem"
  echo "KAFKA_TEST_CLIENT_KEY_FILE=$TLS_DIR/client.key"
  echo "KAFKA_TEST_ADMIN_USERNAME=$ADMIN_USER"
  echo "KAFKA_TEST_ADMIN_PASSWORD=$ADMIN_PASSWORD"
  echo "KAFKA_TEST_USERNAME=$TEST_USER"
  echo "KAFKA_TEST_PASSWORD=$TEST_PASSWORD"
  echo "KAFKA_TEST_MTLS_PRINCIPAL=User:$MTLS_CN"
  # Last: callers take the plaintext address from the last line.
  echo "KAFKA_BROKERS=$BOOTSTRAP"
}

start() {
  local t0 pid deadline why
  t0=$(now_ms)
  resolve_kafka
  if pid=$(broker_pid); then
    # Already running: succeed only once it answers (it may still be starting).
    write_configs
    deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    until probe; do
      alive "$pid" || die "the running broker (pid $pid) exited"
      [ $SECONDS -lt $deadline ] || die "broker pid $pid is running but does not answer on $BOOTSTRAP"
      sleep 1
    done
    tls_complete || die "broker pid $pid is running but $TLS_DIR lacks its certificates; run $0 stop, then start"
    wait_secured 30 keep "a running broker $OLD_DATA_HINT"
    log "already running (pid $pid)"
    if why=$(features_wrong); then
      cat "$KAFKA_DIR/features.txt" >&2
      die "$why"
    fi
    summary "$t0" "$pid"
    return 0
  fi
  local p fresh=
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SASL_PORT" "$KAFKA_MTLS_PORT"; do
    port_open "$p" && die "port $p on 127.0.0.1 is taken by a process that is not this broker: $(ss -ltnpH "sport = :$p" 2>/dev/null | head -n 1)"
  done
  if [ "${KEEP_DATA:-${KAFKA_KEEP_DATA:-}}" = "" ]; then
    # A fresh start must not inherit topics or offsets left by an earlier run.
    rm -rf "$DATA_DIR"
    rm -f "$LOG_DIR"/*.log "$LOG_DIR"/*.log.[0-9]*
    make_tls
    fresh=1
  elif ! tls_complete; then
    make_tls
  fi
  write_configs
  format_storage
  printf '\n===== %s kafka.sh starting kafka %s\n' "$(date -Is)" "$VERSION" >>"$LOG_DIR/stdout.log"
  # setsid + all fds redirected (lock fd 9 closed): the broker outlives this
  # script and holds neither the caller's terminal nor its output pipe.
  setsid "$JAVA" -Xms512m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -Xlog:gc*:file="$LOG_DIR/gc.log":time,tags:filecount=2,filesize=20M \
    -Djava.awt.headless=true -Dkafka.logs.dir="$LOG_DIR" \
    -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.xml" \
    -cp "$LIBS/*" kafka.Kafka "$CONFIG" \
    </dev/null >>"$LOG_DIR/stdout.log" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  log "started kafka $VERSION (pid $pid), waiting for it to answer on $BOOTSTRAP"
  deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  while :; do
    if ! alive "$pid"; then
      rm -f "$PID_FILE"
      die "the broker exited during startup"
    fi
    # Cheap TCP check first; a JVM-based probe only once the listener is up.
    if port_open "$KAFKA_PORT" && probe; then
      break
    fi
    if [ $SECONDS -ge $deadline ]; then
      stop_broker >/dev/null 2>&1 || true
      die "the broker did not answer on $BOOTSTRAP within $KAFKA_START_TIMEOUT s"
    fi
    sleep 0.5
  done
  if why=$(features_wrong); then
    cat "$KAFKA_DIR/features.txt" >&2
    stop_broker >/dev/null 2>&1 || true
    die "$why"
  fi
  # The listeners open together, so once PLAINTEXT answers the secured ones
  # should too; a short grace, then fail rather than wait out the timeout.
  if [ -n "$fresh" ]; then
    wait_secured 30 stop
  else
    wait_secured 30 stop "data $OLD_DATA_HINT"
  fi
  summary "$t0" "$pid"
}

stop_broker() {
  local pid
  if ! pid=$(broker_pid); then
    rm -f "$PID_FILE"
    log "not running"
    return 0
  fi
  stop_pids "$KAFKA_STOP_TIMEOUT" "$pid"
  rm -f "$PID_FILE"
  log "stopped (pid $pid)"
}

case "$KAFKA_DIR" in
  "" | /) echo "kafka.sh: refusing KAFKA_DIR='$KAFKA_DIR'" >&2; exit 2 ;;
esac
mkdir -p "$KAFKA_DIR" "$LOG_DIR"
# One kafka.sh at a time per data dir (e.g. two CI steps racing to start).
exec 9>"$KAFKA_DIR/.lock"
flock -w 300 9 || die "another kafka.sh has held $KAFKA_DIR/.lock for 300 s"

case "${1:-}" in
  start) start ;;
  stop) stop_broker ;;
  restart) stop_broker; KEEP_DATA=1 start ;;
  status)
    pid=$(broker_pid) || { log "not running"; exit 1; }
    resolve_kafka
    write_configs
    probe || die "pid $pid is running but does not answer on $BOOTSTRAP"
    why=$(probe_secured) || die "$why"
    cat "$KAFKA_DIR/features.txt"
    ;;
  *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
