#!/usr/bin/env bash
# Start / stop a real single-node Apache Kafka broker (KRaft, combined broker + controller),
# run from the broker's jars on Maven Central (no tarball downloads, no Docker).
#
#   kafka.sh start [STATE_DIR] [key=value ...]   start (or find running); last stdout line is
#                                                the bootstrap address (127.0.0.1:PORT)
#   kafka.sh stop [STATE_DIR]                    stop (SIGTERM, then SIGKILL); idempotent
#   kafka.sh status [STATE_DIR]                  print the bootstrap address, exit 0 if up
#   kafka.sh build                               resolve the jars only (CI warm-up)
#   kafka.sh tool MAIN_CLASS [ARGS ...]          run a class of the broker's jars, e.g.
#                                                org.apache.kafka.tools.TopicCommand
#                                                --bootstrap-server 127.0.0.1:PORT --list
#
# STATE_DIR defaults to $TANDEM_STATE/kafka ($TANDEM_STATE defaults to .tandem/ in the repository).
# key=value arguments are added to the broker's server.properties (later ones win).
# Only the address goes to stdout; everything else goes to stderr or STATE_DIR/kafka.log.
# A stopped broker started again on the same STATE_DIR keeps its data and, when they are still
# free, its ports; STATE_DIR/env holds TANDEM_TEST_KAFKA=host:port while it runs.
#
# Environment knobs (all optional):
#   TANDEM_CACHE                 cache root (default ~/.cache/tandem); jars go to $TANDEM_CACHE/kafka/
#   TANDEM_KAFKA_VERSION         Apache Kafka version (default 4.1.2)
#   TANDEM_KAFKA_JAVA_HOME       JDK or JRE to use, 17 or newer (default: JAVA_HOME, else java on PATH)
#   TANDEM_KAFKA_XMS / _XMX      heap (default 128m / 512m)
#   TANDEM_KAFKA_JAVA_OPTS       extra JVM options (appended)
#   TANDEM_KAFKA_START_TIMEOUT   seconds to wait until the broker serves (default 90)
#   TANDEM_KAFKA_STOP_TIMEOUT    seconds to wait after SIGTERM before SIGKILL (default 30)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VERSION="${TANDEM_KAFKA_VERSION:-4.1.2}"
CACHE_ROOT="${TANDEM_CACHE:-${HOME:-/tmp}/.cache/tandem}/kafka"
MAIN_CLASS="kafka.Kafka"
FORMAT_CLASS="kafka.tools.StorageTool"
BUILD_FORMAT=1 # bump to invalidate every cached jar set
# The state dir sits next to search node dirs in scripts/dev's $TANDEM_STATE, whose loops stop
# every dir holding `pid` with node.sh: this script's files are named so node.sh leaves them alone.
PID_FILE=kafka.pid
ADDR_FILE=bootstrap
PORTS_FILE=listeners

log() { printf '[kafka.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

default_state() { printf '%s\n' "${TANDEM_STATE:-$ROOT/.tandem}/kafka"; }

abs_dir() { mkdir -p "$1" && (cd "$1" && pwd -P); }

# The broker's dependencies: the server (kafka_2.13, which holds kafka.Kafka and the storage
# tool) and the command-line tools, without Kafka Connect (the connect-plugin-path tool pulls in
# Jetty and Jersey, ~40 jars the broker never loads), plus the SLF4J binding for log4j2.
pom() {
    cat <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tandem</groupId>
  <artifactId>tandem-kafka-broker</artifactId>
  <version>1</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$VERSION</version>
      <exclusions>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
        <exclusion><groupId>com.fasterxml.jackson.jakarta.rs</groupId><artifactId>*</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>2.25.3</version>
    </dependency>
  </dependencies>
</project>
EOF
}

jars_ok() { [[ -f "$1/ok" && -d "$1/jars" ]] && compgen -G "$1/jars/kafka_2.13-*.jar" >/dev/null; }

# Resolve the jars with Maven into the cache (flat copy, so the cache does not depend on ~/.m2).
# Prints the jar set's dir. Keyed by the version and the pom, so a second start calls no Maven.
build() {
    local key out tmp attempt
    [[ "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "TANDEM_KAFKA_VERSION='$VERSION' is not a version like 4.1.2"
    key="$( { echo "format=$BUILD_FORMAT"; pom; } | sha256sum | cut -c1-12)"
    out="$CACHE_ROOT/$VERSION-$key"
    if jars_ok "$out"; then
        printf '%s\n' "$out"
        return
    fi
    command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
    mkdir -p "$CACHE_ROOT"
    (
        flock -w 900 9 || die "timed out waiting for the jar resolution lock"
        if jars_ok "$out"; then exit 0; fi
        log "resolving Apache Kafka $VERSION jars with Maven into $out ..."
        tmp="$(mktemp -d "$CACHE_ROOT/.build-$VERSION.XXXXXX")"
        pom >"$tmp/pom.xml"
        local update=()
        for attempt in 1 2 3; do
            if mvn -B -q "${update[@]}" -f "$tmp/pom.xml" dependency:copy-dependencies \
                -DoutputDirectory="$tmp/jars" -DincludeScope=runtime >"$tmp/mvn.log" 2>&1; then
                break
            fi
            # a missing artifact is final; only transfer problems are worth another try
            if [[ $attempt == 3 ]] || grep -qE 'Could not find artifact|was not found in' "$tmp/mvn.log"; then
                tail -n 40 "$tmp/mvn.log" >&2
                rm -rf "$tmp"
                die "maven could not resolve Apache Kafka $VERSION (see above)"
            fi
            log "mvn failed (attempt $attempt), retrying ..."
            update=(-U)
            sleep $((attempt * 3))
        done
        touch "$tmp/ok"
        rm -rf "$out"
        mv "$tmp" "$out"
        log "resolved $(find "$out/jars" -name '*.jar' | wc -l) jars ($(du -sh "$out/jars" | cut -f1))"
    ) 9>"$CACHE_ROOT/.lock"
    jars_ok "$out" || die "jar resolution for Apache Kafka $VERSION failed"
    printf '%s\n' "$out"
}

java_major() { # $1 = java binary
    "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p' | head -n1 | sed 's/^1\.//'
}

pick_java() { # prints the java binary (Kafka 4 brokers need Java 17+)
    local j m
    if [[ -n "${TANDEM_KAFKA_JAVA_HOME:-}" ]]; then
        j="$TANDEM_KAFKA_JAVA_HOME/bin/java"
    elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        j="$JAVA_HOME/bin/java"
    else
        j="$(command -v java 2>/dev/null)" || die "java not found (apt-get install openjdk-17-jre-headless, or set TANDEM_KAFKA_JAVA_HOME)"
    fi
    [[ -x "$j" ]] || die "no java at $j"
    m="$(java_major "$j" || true)"
    if ! [[ "$m" =~ ^[0-9]+$ ]] || ((m < 17)); then
        die "$j is Java ${m:-?}; Apache Kafka $VERSION needs Java 17 or newer (set TANDEM_KAFKA_JAVA_HOME)"
    fi
    printf '%s\n' "$j"
}

pid_alive() { # pid state-dir: alive and really our broker for that state dir
    local pid="$1" state="$2"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$MAIN_CLASS $state/server.properties"
}

read_port() { # state-dir key (empty when unknown)
    [[ -f "$1/$PORTS_FILE" ]] || return 0
    sed -n "s/^$2=//p" "$1/$PORTS_FILE" | head -n1
}

port_open() { # port: something accepts connections on 127.0.0.1:port
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Prints "broker controller": the ports of the last run when both can still be bound (a restarted
# broker keeps its address, so clients configured with it reconnect), else two fresh ones.
# SO_REUSEADDR as the JVM sets it on server sockets: ports in TIME_WAIT count as free.
pick_ports() { # want-broker want-controller
    python3 - "$@" <<'EOF'
import socket, sys
def bind(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    return s
wanted = [int(p) for p in sys.argv[1:] if p.isdigit()]
socks = []
if len(wanted) == 2 and wanted[0] != wanted[1]:
    try:
        socks = [bind(p) for p in wanted]
    except OSError:
        for s in socks:
            s.close()
        socks = []
if not socks:
    socks = [bind(0), bind(0)]  # both held open at once: two distinct ports
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

new_cluster_id() { # 16 random bytes, base64url without padding, not starting with '-' (as Kafka's Uuid.randomUuid)
    python3 -c '
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break'
}

write_log4j() { # file: warnings and errors, plus the broker's own start / stop lines
    cat >"$1" <<'EOF'
# Written by scripts/kafka.sh on every start.
status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}] %-5p %m (%c{1})%n
rootLogger.level = warn
rootLogger.appenderRef.console.ref = console
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = info
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = info
logger.controller.name = kafka.server.ControllerServer
logger.controller.level = info
EOF
}

write_properties() { # state broker-port controller-port extra key=value ...
    local state="$1" bport="$2" cport="$3" kv
    shift 3
    {
        echo "# Written by scripts/kafka.sh on every start: a single-node KRaft cluster (broker + controller)."
        echo "process.roles=broker,controller"
        echo "node.id=1"
        # A static voter set: the controller's address comes from this file, not from the
        # formatted metadata log, so a restart on other ports still finds its quorum.
        echo "controller.quorum.voters=1@127.0.0.1:$cport"
        echo "listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport"
        echo "advertised.listeners=PLAINTEXT://127.0.0.1:$bport"
        echo "controller.listener.names=CONTROLLER"
        echo "inter.broker.listener.name=PLAINTEXT"
        echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        echo "log.dirs=$state/data"
        # One broker: every internal topic has one replica.
        echo "offsets.topic.replication.factor=1"
        echo "transaction.state.log.replication.factor=1"
        echo "transaction.state.log.min.isr=1"
        echo "share.coordinator.state.topic.replication.factor=1"
        echo "share.coordinator.state.topic.min.isr=1"
        # Small and quick: few internal partitions, no delay before the first group rebalance,
        # a small log cleaner buffer (the default 128 MiB would take a quarter of the heap).
        echo "offsets.topic.num.partitions=4"
        echo "transaction.state.log.num.partitions=4"
        echo "group.initial.rebalance.delay.ms=0"
        echo "log.cleaner.dedupe.buffer.size=16777216"
        echo "num.network.threads=2"
        echo "num.io.threads=4"
        echo "num.recovery.threads.per.data.dir=2"
        for kv in "$@"; do echo "$kv"; done
    } >"$state/server.properties"
}

write_env() { # state address
    printf 'export TANDEM_TEST_KAFKA=%s\n' "$2" >"$1/env"
}

jvm_opts() { # state
    local state="$1" extra=()
    opts=(
        "-Xms${TANDEM_KAFKA_XMS:-128m}" "-Xmx${TANDEM_KAFKA_XMX:-512m}"
        -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -XX:-OmitStackTraceInFastThrow
        -Djava.awt.headless=true -Dfile.encoding=UTF-8
        "-Djava.io.tmpdir=$state/tmp"
        "-Dlog4j2.configurationFile=$state/log4j2.properties" -Dlog4j2.shutdownHookEnabled=false
    )
    if [[ -n "${TANDEM_KAFKA_JAVA_OPTS:-}" ]]; then
        read -r -a extra <<<"$TANDEM_KAFKA_JAVA_OPTS"
        opts+=("${extra[@]}")
    fi
}

cmd_stop() {
    [[ $# -le 1 ]] || usage
    local dir="${1:-$(default_state)}" state pid deadline t0=$SECONDS
    [[ -d "$dir" ]] || { log "no state dir $dir; nothing to stop"; return 0; }
    state="$(cd "$dir" && pwd -P)"
    pid="$(cat "$state/$PID_FILE" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && pid_alive "$pid" "$state"; then
        log "stopping pid $pid ($state)"
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + ${TANDEM_KAFKA_STOP_TIMEOUT:-30}))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid still alive after SIGTERM, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        fi
        log "stopped ($((SECONDS - t0))s)"
    else
        log "not running ($state)"
    fi
    # the ports file stays: the next start takes the same ports when it can
    rm -f "$state/$PID_FILE" "$state/$ADDR_FILE" "$state/env"
}

cmd_status() {
    [[ $# -le 1 ]] || usage
    local dir="${1:-$(default_state)}" state pid addr
    if [[ ! -d "$dir" ]]; then
        log "not running (no state dir $dir)"
        return 1
    fi
    state="$(cd "$dir" && pwd -P)"
    pid="$(cat "$state/$PID_FILE" 2>/dev/null || true)"
    addr="$(cat "$state/$ADDR_FILE" 2>/dev/null || true)"
    if [[ -n "$pid" && -n "$addr" ]] && pid_alive "$pid" "$state" && port_open "${addr##*:}"; then
        log "running (pid $pid, Apache Kafka $(cat "$state/version" 2>/dev/null || echo '?')), bootstrap $addr"
        printf '%s\n' "$addr"
        return 0
    fi
    if [[ -n "$pid" ]] && pid_alive "$pid" "$state"; then
        log "pid $pid is alive but does not serve${addr:+ on $addr} ($state)"
    else
        log "not running ($state)"
    fi
    return 1
}

cmd_build() {
    [[ $# -eq 0 ]] || usage
    local dir
    dir="$(build)"
    log "Apache Kafka $VERSION jars are in $dir/jars"
}

cmd_tool() {
    [[ $# -ge 1 ]] || usage
    local java dir cls="$1"
    shift
    java="$(pick_java)"
    dir="$(build)"
    [[ -f "$dir/log4j2-tools.properties" ]] || write_log4j "$dir/log4j2-tools.properties"
    exec "$java" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        "-Dlog4j2.configurationFile=$dir/log4j2-tools.properties" -cp "$dir/jars/*" "$cls" "$@"
}

cmd_start() {
    local dir state java jdir pid addr bport cport deadline t0=$SECONDS opts=() props=()
    dir="$(default_state)"
    if [[ $# -ge 1 && "$1" != *=* ]]; then
        dir="$1"
        shift
    fi
    local a
    for a in "$@"; do [[ "$a" =~ ^[A-Za-z0-9._-]+=.*$ ]] || die "unexpected argument '$a' (want key=value)"; done
    props=("$@")
    state="$(abs_dir "$dir")"
    # one start at a time per state dir (fd 8 is closed for the broker process below)
    exec 8>"$state/.start.lock"
    flock -w 600 8 || die "timed out waiting for another start in $state"

    pid="$(cat "$state/$PID_FILE" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && pid_alive "$pid" "$state"; then
        addr="$(cat "$state/$ADDR_FILE" 2>/dev/null || true)"
        if [[ -n "$addr" ]] && port_open "${addr##*:}"; then
            log "already running (pid $pid)"
            printf '%s\n' "$addr"
            return 0
        fi
        die "a broker (pid $pid) is already running for $state but does not serve; run: $0 stop $state"
    fi
    rm -f "$state/$PID_FILE" "$state/$ADDR_FILE" "$state/env"
    if [[ -f "$state/version" && "$(cat "$state/version")" != "$VERSION" && -f "$state/data/meta.properties" ]]; then
        log "note: $state was formatted by Apache Kafka $(cat "$state/version"); starting $VERSION on it"
    fi

    java="$(pick_java)"
    jdir="$(build)"
    mkdir -p "$state/tmp" "$state/data"
    write_log4j "$state/log4j2.properties"

    read -r bport cport <<<"$(pick_ports "$(read_port "$state" broker)" "$(read_port "$state" controller)")"
    [[ "$bport" =~ ^[0-9]+$ && "$cport" =~ ^[0-9]+$ ]] || die "could not pick free ports"
    local old
    old="$(read_port "$state" broker)"
    [[ -z "$old" || "$old" == "$bport" ]] || log "port $old of the last run is taken; the broker moves to $bport"
    printf 'broker=%s\ncontroller=%s\n' "$bport" "$cport" >"$state/$PORTS_FILE"
    addr="127.0.0.1:$bport"
    write_properties "$state" "$bport" "$cport" "${props[@]}"
    jvm_opts "$state"

    if [[ ! -f "$state/data/meta.properties" ]]; then
        [[ -s "$state/cluster-id" ]] || new_cluster_id >"$state/cluster-id"
        log "formatting $state/data (cluster id $(cat "$state/cluster-id"))"
        if ! "$java" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
            "-Dlog4j2.configurationFile=$state/log4j2.properties" -cp "$jdir/jars/*" \
            "$FORMAT_CLASS" format "--cluster-id=$(cat "$state/cluster-id")" "--config=$state/server.properties" \
            >"$state/format.log" 2>&1; then
            cat "$state/format.log" >&2
            die "formatting the KRaft storage failed"
        fi
    fi
    echo "$VERSION" >"$state/version"

    [[ -f "$state/kafka.log" ]] && mv -f "$state/kafka.log" "$state/kafka.log.1"
    log "starting Apache Kafka $VERSION in $state ($("$java" -version 2>&1 | head -n1))"
    local runner=()
    command -v setsid >/dev/null && runner=(setsid)
    # Own session, no inherited stdout/stderr: a caller reading our stdout to EOF must not hang.
    nohup "${runner[@]}" "$java" "${opts[@]}" -cp "$jdir/jars/*" \
        "$MAIN_CLASS" "$state/server.properties" >"$state/kafka.log" 2>&1 </dev/null 8>&- 9>&- &
    pid=$!
    echo "$pid" >"$state/$PID_FILE"

    deadline=$((SECONDS + ${TANDEM_KAFKA_START_TIMEOUT:-90}))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "broker process $pid exited during startup; last lines of $state/kafka.log:"
            tail -n 40 "$state/kafka.log" >&2 || true
            rm -f "$state/$PID_FILE"
            exit 1
        fi
        # "Kafka Server started" comes once the broker has caught up with the metadata log and
        # serves requests; the port check guards against a log line of some other process.
        if grep -q 'Kafka Server started' "$state/kafka.log" 2>/dev/null && port_open "$bport"; then
            break
        fi
        if ((SECONDS >= deadline)); then
            log "timed out after ${TANDEM_KAFKA_START_TIMEOUT:-90}s waiting for the broker; last lines of $state/kafka.log:"
            tail -n 40 "$state/kafka.log" >&2 || true
            cmd_stop "$state" || true
            exit 1
        fi
        sleep 0.2
    done
    echo "$addr" >"$state/$ADDR_FILE"
    write_env "$state" "$addr"
    log "Apache Kafka $VERSION up at $addr (pid $pid, $((SECONDS - t0))s)"
    printf '%s\n' "$addr"
}

[[ $# -ge 1 ]] || usage
sub="$1"
shift
case "$sub" in
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
status) cmd_status "$@" ;;
build) cmd_build "$@" ;;
tool) cmd_tool "$@" ;;
-h | --help | help) usage ;;
*) usage ;;
esac
