#!/usr/bin/env bash
# Start / stop a real single-node Elasticsearch or OpenSearch cluster, embedded in a JVM,
# built from Maven Central artifacts only (no Docker, no tarball downloads).
#
#   node.sh start <flavor> <state-dir> [-Ekey=value ...]   start; last stdout line is the URL
#   node.sh stop <state-dir>                                stop (SIGTERM, then SIGKILL); idempotent
#   node.sh status <state-dir>                              print the URL and exit 0 if up and healthy
#   node.sh build <flavor>                                  resolve + compile only (CI warm-up)
#   node.sh flavors                                         list flavors ("name<TAB>description")
#
# Only the URL goes to stdout; everything else goes to stderr or <state-dir>/node.log.
#
# Environment knobs (all optional):
#   TANDEM_CACHE                   cache root (default ~/.cache/tandem); launcher builds go to $TANDEM_CACHE/search/
#   TANDEM_SEARCH_JAVA_HOME        JDK to use (default: the first of JAVA_HOME, java on PATH, /usr/lib/jvm/*
#                                  in the flavor's range, flavors/<flavor>/java: "MIN" or "MIN-MAX", default 17-21)
#   TANDEM_SEARCH_XMS / _XMX       heap (default 256m / 512m)
#   TANDEM_SEARCH_JAVA_OPTS        extra JVM options (appended)
#   TANDEM_SEARCH_START_TIMEOUT    seconds to wait for yellow health (default 180)
#   TANDEM_SEARCH_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default 30)
#   TANDEM_SEARCH_WATCH_PID        the node exits by itself when this pid is gone (e.g. the test harness)
#   TANDEM_SEARCH_SHARED_REPO      a directory added to path.repo (snapshots shared between clusters)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${TANDEM_CACHE:-${HOME:-/tmp}/.cache/tandem}/search"
MAIN_CLASS="tandem.search.Launcher"
BUILD_FORMAT=1 # bump to invalidate every cached launcher build

log() { printf '[node.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

FLAVOR_ORDER=(es7 os2 es8 os3 os1 es9 es6 es5 es710) # most important first; any other flavors/<name>/ follow

flavor_list() {
    local f d seen=" "
    for f in "${FLAVOR_ORDER[@]}" $(cd "$HERE/flavors" && ls); do
        d="$HERE/flavors/$f"
        [[ -f "$d/pom.xml" && "$seen" != *" $f "* ]] || continue
        seen+="$f "
        printf '%s\t%s\n' "$f" "$(cat "$d/description" 2>/dev/null || true)"
    done
}

check_flavor() {
    local f="$1"
    [[ "$f" =~ ^[a-z0-9._-]+$ && -f "$HERE/flavors/$f/pom.xml" ]] ||
        die "unknown flavor '$f' (known: $(flavor_list | cut -f1 | tr '\n' ' '))"
}

java_major() { # $1 = java binary
    "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p' | head -n1 | sed 's/^1\.//'
}

# JDK range of a flavor: flavors/<flavor>/java holds "MIN" or "MIN-MAX" (Java feature versions).
# MIN is required; MAX is preferred (a newer JDK is used only when none in range is installed).
# Without the file: 17-21.
java_range() { # flavor -> "min max"
    local spec="17-21" f="$HERE/flavors/$1/java"
    [[ -f "$f" ]] && spec="$(sed -e 's/#.*//' "$f" | tr -d ' \t\r' | grep -v '^$' | head -n1)"
    [[ "$spec" =~ ^([0-9]+)(-([0-9]+))?$ ]] || die "bad JDK range '$spec' in $f (want MIN or MIN-MAX)"
    printf '%s %s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[3]:-999}"
}

# Candidate JDKs, best first: JAVA_HOME, the java on PATH, then the installed ones
# (/usr/lib/jvm/*, newest first), each once.
jdk_candidates() {
    local j seen=" "
    {
        [[ -n "${JAVA_HOME:-}" ]] && printf '%s\n' "$JAVA_HOME"
        if j="$(command -v java 2>/dev/null)"; then dirname "$(dirname "$(readlink -f "$j")")"; fi
        ls -d /usr/lib/jvm/*/ 2>/dev/null | sort -rV
    } | while read -r j; do
        j="$(readlink -f "$j" 2>/dev/null || true)"
        [[ -n "$j" && -x "$j/bin/java" && -x "$j/bin/javac" && "$seen" != *" $j "* ]] || continue
        seen+="$j "
        printf '%s\n' "$j"
    done
}

pick_java_home() { # flavor
    local min max jh m fallback="" fallback_m=999
    read -r min max <<<"$(java_range "$1")"
    if [[ -n "${TANDEM_SEARCH_JAVA_HOME:-}" ]]; then
        m="$(java_major "$TANDEM_SEARCH_JAVA_HOME/bin/java" || echo 0)"
        [[ "$m" =~ ^[0-9]+$ ]] && ((m >= min)) ||
            die "TANDEM_SEARCH_JAVA_HOME=$TANDEM_SEARCH_JAVA_HOME is Java ${m:-?}, flavor $1 needs Java $min or newer"
        printf '%s\n' "$TANDEM_SEARCH_JAVA_HOME"
        return
    fi
    while read -r jh; do
        m="$(java_major "$jh/bin/java" || echo 0)"
        [[ "$m" =~ ^[0-9]+$ ]] && ((m >= min)) || continue
        if ((m <= max)); then
            printf '%s\n' "$jh"
            return
        fi
        # newer than preferred: remember the oldest such JDK in case nothing in range is installed
        if ((m < fallback_m)); then fallback="$jh" fallback_m="$m"; fi
    done < <(jdk_candidates)
    [[ -n "$fallback" ]] && { printf '%s\n' "$fallback"; return; }
    die "flavor $1 needs a JDK (java + javac) of version $min or newer; none found (set TANDEM_SEARCH_JAVA_HOME)"
}

# Flavor JVM options: flavors/<flavor>/jvm.options, one option a line, optionally prefixed with
# a Java version range as in the distributions' jvm.options ("9-22:-Dx=y", "17-:...", "21:...").
flavor_jvm_options() { # flavor major
    local f="$HERE/flavors/$1/jvm.options" line lo hi opt
    [[ -f "$f" ]] || return 0
    while IFS= read -r line || [[ -n "$line" ]]; do
        line="${line%%#*}"
        line="$(printf '%s' "$line" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')"
        [[ -n "$line" ]] || continue
        if [[ "$line" =~ ^([0-9]+)(-([0-9]*))?:(.+)$ ]]; then
            lo="${BASH_REMATCH[1]}" opt="${BASH_REMATCH[4]}"
            if [[ -z "${BASH_REMATCH[2]}" ]]; then hi="$lo"; else hi="${BASH_REMATCH[3]:-999}"; fi
            ((${2:-0} >= lo && ${2:-0} <= hi)) || continue
        else
            opt="$line"
        fi
        printf '%s\n' "$opt"
    done <"$f"
}

sources_of() { # flavor -> java sources to compile: the launcher and every *.java of the flavor
    printf '%s\n' "$HERE/java/Launcher.java"
    ls "$HERE/flavors/$1/"*.java | LC_ALL=C sort
}

classpath_ok() { # $1 = build dir: every jar on the cached classpath still exists
    local cp entry
    [[ -f "$1/ok" && -f "$1/classpath.txt" && -d "$1/classes" ]] || return 1
    cp="$(cat "$1/classpath.txt")"
    IFS=':' read -r -a entries <<<"$cp"
    for entry in "${entries[@]}"; do
        [[ -e "$entry" ]] || return 1
    done
}

# Resolve the flavor's dependencies with mvn and compile the launcher with javac.
# Prints the build dir. Cached by a hash of the pom, the sources and the JDK.
build() {
    local flavor="$1" jh="$2" fdir="$HERE/flavors/$1" key out tmp attempt src
    command -v mvn >/dev/null || die "mvn not found"
    key="$(
        {
            echo "format=$BUILD_FORMAT"
            cat "$fdir/pom.xml"
            cat "$fdir/java" 2>/dev/null || true
            sources_of "$flavor" | while read -r src; do cat "$src"; done
            "$jh/bin/java" -version 2>&1
        } | sha256sum | cut -c1-16
    )"
    out="$CACHE_ROOT/$flavor-$key"
    if classpath_ok "$out"; then
        printf '%s\n' "$out"
        return
    fi
    mkdir -p "$CACHE_ROOT"
    (
        flock -w 900 9 || die "timed out waiting for the build lock of $flavor"
        if classpath_ok "$out"; then exit 0; fi
        log "building launcher for $flavor (mvn dependency resolution + javac) ..."
        tmp="$(mktemp -d "$CACHE_ROOT/.build-$flavor.XXXXXX")"
        local update=()
        for attempt in 1 2 3; do
            if (cd "$fdir" && mvn -B -q "${update[@]}" -f "$fdir/pom.xml" \
                dependency:build-classpath \
                -Dmdep.outputFile="$tmp/classpath.txt" -Dmdep.includeScope=runtime) >"$tmp/mvn.log" 2>&1; then
                break
            fi
            # a missing artifact is final; only transfer problems are worth another try
            if [[ $attempt == 3 ]] || grep -qE 'Could not find artifact|was not found in' "$tmp/mvn.log"; then
                tail -n 60 "$tmp/mvn.log" >&2
                rm -rf "$tmp"
                die "maven could not resolve the $flavor dependencies (see above)"
            fi
            log "mvn failed (attempt $attempt), retrying ..."
            update=(-U) # re-attempt downloads that failed and were cached as failed
            sleep $((attempt * 3))
        done
        mkdir -p "$tmp/classes"
        mapfile -t srcs < <(sources_of "$flavor")
        if ! "$jh/bin/javac" -nowarn -encoding UTF-8 -d "$tmp/classes" \
            -cp "$(cat "$tmp/classpath.txt")" "${srcs[@]}" >"$tmp/javac.log" 2>&1; then
            cat "$tmp/javac.log" >&2
            rm -rf "$tmp"
            die "javac failed for $flavor"
        fi
        touch "$tmp/ok"
        rm -rf "$out"
        mv "$tmp" "$out"
        # older builds (other JDK / older sources) are a few KB each and may be in use by a running node: keep them
    ) 9>"$CACHE_ROOT/.lock-$flavor"
    classpath_ok "$out" || die "launcher build for $flavor failed"
    printf '%s\n' "$out"
}

abs_dir() { mkdir -p "$1" && (cd "$1" && pwd -P); }

pid_alive() { # pid state-dir: alive and really our launcher for that state dir
    local pid="$1" state="$2"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$MAIN_CLASS $state"
}

read_port() { # state-dir key
    sed -n "s/^$2=//p" "$1/ports" 2>/dev/null | head -n1
}

healthy() { # url
    local body
    body="$(curl -fsS -m 15 "$1/_cluster/health?wait_for_status=yellow&timeout=10s" 2>/dev/null)" || return 1
    [[ "$body" == *'"status":"green"'* || "$body" == *'"status":"yellow"'* ]] && [[ "$body" != *'"timed_out":true'* ]]
}

cmd_stop() {
    [[ $# -eq 1 ]] || usage
    local state pid deadline
    [[ -d "$1" ]] || { log "no state dir $1; nothing to stop"; return 0; }
    state="$(cd "$1" && pwd -P)"
    pid="$(cat "$state/pid" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && pid_alive "$pid" "$state"; then
        log "stopping pid $pid ($state)"
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + ${TANDEM_SEARCH_STOP_TIMEOUT:-30}))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid still alive after SIGTERM, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        fi
    else
        log "not running ($state)"
    fi
    rm -f "$state/pid" "$state/url" "$state/ports"
}

cmd_status() {
    [[ $# -eq 1 ]] || usage
    local state pid url
    [[ -d "$1" ]] || return 1
    state="$(cd "$1" && pwd -P)"
    pid="$(cat "$state/pid" 2>/dev/null || true)"
    url="$(cat "$state/url" 2>/dev/null || true)"
    [[ -n "$pid" && -n "$url" ]] && pid_alive "$pid" "$state" && healthy "$url" || return 1
    printf '%s\n' "$url"
}

cmd_build() {
    [[ $# -eq 1 ]] || usage
    check_flavor "$1"
    local jh
    jh="$(pick_java_home "$1")"
    build "$1" "$jh" >/dev/null
    log "launcher for $1 is built"
}

cmd_start() {
    [[ $# -ge 2 ]] || usage
    local flavor="$1" state jh bdir pid url http major deadline t0 opts=()
    shift
    check_flavor "$flavor"
    state="$(abs_dir "$1")"
    shift
    local a
    for a in "$@"; do [[ "$a" == -E*=* ]] || die "unexpected argument '$a' (want -Ekey=value)"; done
    t0=$SECONDS
    # one start at a time per state dir (fd 8 is closed for the node process below)
    exec 8>"$state/.start.lock"
    flock -w 600 8 || die "timed out waiting for another start in $state"

    pid="$(cat "$state/pid" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && pid_alive "$pid" "$state"; then
        [[ "$(cat "$state/flavor" 2>/dev/null || true)" == "$flavor" ]] ||
            die "a '$(cat "$state/flavor" 2>/dev/null || echo unknown)' node (pid $pid) is running for $state; stop it first"
        url="$(cat "$state/url" 2>/dev/null || true)"
        if [[ -n "$url" ]] && healthy "$url"; then
            log "already running (pid $pid)"
            printf '%s\n' "$url"
            return 0
        fi
        die "a node (pid $pid) is already running for $state but is not healthy; run: $0 stop $state"
    fi
    rm -f "$state/pid" "$state/url" "$state/ports"
    # data written by one flavor/version cannot be opened by another: refuse early with a clear message
    if [[ -f "$state/flavor" && "$(cat "$state/flavor")" != "$flavor" ]] &&
        [[ -n "$(ls -A "$state/data" 2>/dev/null)" ]]; then
        die "$state holds data of flavor '$(cat "$state/flavor")', not '$flavor'; use another state dir"
    fi
    echo "$flavor" >"$state/flavor"

    jh="$(pick_java_home "$flavor")"
    major="$(java_major "$jh/bin/java")"
    bdir="$(build "$flavor" "$jh")"
    mkdir -p "$state/tmp"

    opts=(
        "-Xms${TANDEM_SEARCH_XMS:-256m}" "-Xmx${TANDEM_SEARCH_XMX:-512m}"
        -XX:+UseSerialGC -XX:MaxDirectMemorySize=256m -Xss1m
        -XX:-OmitStackTraceInFastThrow -XX:+ExitOnOutOfMemoryError
        -Djava.awt.headless=true -Dfile.encoding=UTF-8 -Djna.nosys=true
        "-Djava.io.tmpdir=$state/tmp"
        -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true
        -Dio.netty.recycler.maxCapacityPerThread=0 -Dio.netty.allocator.numDirectArenas=0
        "-Dlog4j.configurationFile=$HERE/log4j2.properties"
        -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true -Dlog4j2.formatMsgNoLookups=true
    )
    # Per-flavor options (e.g. the locale providers the distribution's jvm.options set).
    mapfile -t extra < <(flavor_jvm_options "$flavor" "$major")
    opts+=("${extra[@]}")
    if [[ -n "${TANDEM_SEARCH_JAVA_OPTS:-}" ]]; then
        read -r -a extra <<<"$TANDEM_SEARCH_JAVA_OPTS"
        opts+=("${extra[@]}")
    fi

    log "starting $flavor in $state (java $major: $jh)"
    local runner=()
    command -v setsid >/dev/null && runner=(setsid)
    # Own session, no inherited stdout/stderr: a caller reading our stdout to EOF must not hang.
    nohup "${runner[@]}" "$jh/bin/java" "${opts[@]}" \
        -cp "$bdir/classes:$(cat "$bdir/classpath.txt")" \
        "$MAIN_CLASS" "$state" "$@" >"$state/node.log" 2>&1 </dev/null 8>&- 9>&- &
    pid=$!
    echo "$pid" >"$state/pid"

    deadline=$((SECONDS + ${TANDEM_SEARCH_START_TIMEOUT:-180}))
    url=""
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "node process $pid exited during startup; last lines of $state/node.log:"
            tail -n 60 "$state/node.log" >&2 || true
            rm -f "$state/pid"
            exit 1
        fi
        if [[ -z "$url" && -f "$state/ports" ]]; then
            http="$(read_port "$state" http)"
            [[ -n "$http" ]] && url="http://127.0.0.1:$http"
            # the launcher reports its own pid; prefer it (robust against wrappers)
            a="$(read_port "$state" pid)"
            [[ "$a" =~ ^[0-9]+$ ]] && [[ "$a" != "$pid" ]] && kill -0 "$a" 2>/dev/null && { pid="$a"; echo "$pid" >"$state/pid"; }
        fi
        if [[ -n "$url" ]] && healthy "$url"; then
            break
        fi
        if ((SECONDS >= deadline)); then
            log "timed out after ${TANDEM_SEARCH_START_TIMEOUT:-180}s waiting for yellow health; last lines of $state/node.log:"
            tail -n 60 "$state/node.log" >&2 || true
            cmd_stop "$state" || true
            exit 1
        fi
        sleep 0.3
    done
    echo "$url" >"$state/url"
    log "$flavor up at $url ($(read_port "$state" version), pid $pid, $((SECONDS - t0))s)"
    printf '%s\n' "$url"
}

[[ $# -ge 1 ]] || usage
sub="$1"
shift
case "$sub" in
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
status) cmd_status "$@" ;;
build) cmd_build "$@" ;;
flavors) flavor_list ;;
-h | --help | help) usage ;;
*) usage ;;
esac
