# shellcheck shell=bash
# Sourced by the .ci scripts that run a local server for the tests
# (kafka.sh, registry.sh, redis.sh, consumers.sh): what they would otherwise
# each carry a copy of. The sourcing script defines log (its messages name
# the script) before calling anything here.

# The maven-dependency-plugin that mvn_copy runs: pinned, so a new release
# cannot change what resolves.
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
secs_since() { local d=$(($(now_ms) - $1)); printf '%d.%d' $((d / 1000)) $((d % 1000 / 100)); }

# kill -0 also succeeds on a zombie.
alive() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) && [ -n "$st" ] && [ "$st" != Z ]
}

# A TCP connect to 127.0.0.1:$1 succeeds.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

any_alive() {
  local pid
  for pid in "$@"; do alive "$pid" && return 0; done
  return 1
}

# stop_pids TIMEOUT PID...: SIGTERM to each, then SIGKILL to those that
# ignored it for TIMEOUT seconds; returns when every PID is gone.
stop_pids() {
  local timeout=$1 pid i
  shift
  kill -TERM "$@" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    any_alive "$@" || break
    sleep 0.1
  done
  for pid in "$@"; do
    if alive "$pid"; then
      log "pid $pid ignored SIGTERM for $timeout s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for pid in "$@"; do while alive "$pid"; do sleep 0.1; done; done
}

# stop_pidfile PID_FN TIMEOUT: stops the one server whose pid PID_FN prints
# (failing when none runs) with stop_pids, and removes the caller's
# $PID_FILE either way.
stop_pidfile() {
  local pid
  if ! pid=$($1); then
    rm -f "$PID_FILE"
    log "not running"
    return 0
  fi
  stop_pids "$2" "$pid"
  rm -f "$PID_FILE"
  log "stopped (pid $pid)"
}

# mvn_copy POM DIR LOG WHAT [ARG...]: copies the dependencies POM lists
# into DIR from Maven Central, appending mvn's output to LOG (ARGs go to
# mvn). On failure it logs mvn's first errors, naming WHAT, and returns 1.
mvn_copy() {
  local pom=$1 dir=$2 mvn_log=$3 what=$4
  shift 4
  if timeout 900 mvn -q -B -Dstyle.color=never -f "$pom" "$DEPENDENCY_PLUGIN:copy-dependencies" \
      -DoutputDirectory="$dir" "$@" >>"$mvn_log" 2>&1; then
    return 0
  fi
  log "mvn could not resolve $what:"
  sed 's/\x1b\[[0-9;]*m//g' "$mvn_log" | grep -E 'ERROR.*(Could not|Failed|not found)' | head -n 3 >&2 || tail -n 5 "$mvn_log" >&2
  return 1
}

# leaf_cert NAME CN EXT: NAME.pem and NAME.key (unencrypted PKCS#8, which
# Go's tls.LoadX509KeyPair and Java both read) signed by ca.pem/ca.key with
# ca.cnf (all in the current directory), subject CN=CN, extensions EXT
# (lines, separated by newlines or \n).
leaf_cert() {
  printf '%b\n' "basicConstraints = critical, CA:FALSE" \
    "keyUsage = critical, digitalSignature, keyEncipherment" \
    "subjectKeyIdentifier = hash" "authorityKeyIdentifier = keyid" "$3" >"$1.ext" &&
    openssl req -new -config ca.cnf -newkey rsa:2048 -nodes -sha256 -subj "/CN=$2" \
      -keyout "$1.key" -out "$1.csr" &&
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
      -sha256 -days 3650 -extfile "$1.ext" -out "$1.pem" &&
    rm -f "$1.csr"
}

# fail_with_logs NAME MESSAGE LINES [LOG...]: prints "NAME: FAILED: MESSAGE",
# then the last LINES lines of each non-empty LOG, and exits 1. Each
# script's die() calls it with the logs that explain its failures.
fail_with_logs() {
  local name=$1 msg=$2 lines=$3 f
  shift 3
  printf '%s: FAILED: %s\n' "$name" "$msg" >&2
  for f in "$@"; do
    if [ -s "$f" ]; then
      printf -- '--- last lines of %s\n' "$f" >&2
      tail -n "$lines" "$f" >&2
    fi
  done
  exit 1
}
