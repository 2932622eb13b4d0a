#!/usr/bin/env bash
# Kafka client throughput: TwinStream's Swift producer and consumer (`twinctl bench …`) against
# kcat, on the same embedded broker (`twinctl broker`, librdkafka's mock cluster), in the same
# run, with the same 200-byte telemetry-like payloads. Not run in CI. See Benchmarks/README.md.
#
#   Benchmarks/kafka-throughput.sh                 # N=200000, 3 runs
#   N=1000000 RUNS=5 Benchmarks/kafka-throughput.sh
#   TWINCTL=/path/to/twinctl Benchmarks/kafka-throughput.sh   # skip `swift build`
#
# Environment: N (messages, 200000), SIZE (value bytes, 200), RUNS (3), PARTITIONS (of the
# consume topics; default max(16, N/10000)), KEYS (distinct twin ids, 10000), TIMEOUT (seconds
# per command, 300), TARGET (0.80), TWINCTL, KCAT (kcat), STRICT=1 (exit 1 when a target is missed),
# CONSUME_BASELINE (assign: `twinctl bench consume` reads assigned partitions, as it does now;
# group: it joins a consumer group) picks the kcat mode the Swift consumer is judged against.
set -euo pipefail

N=${N:-200000}
SIZE=${SIZE:-200}
RUNS=${RUNS:-3}
KEYS=${KEYS:-10000}
TIMEOUT=${TIMEOUT:-300}
TARGET=${TARGET:-0.80}
KCAT=${KCAT:-kcat}
STRICT=${STRICT:-0}
CONSUME_BASELINE=${CONSUME_BASELINE:-assign}
# The mock broker keeps only the last ~5 MiB of each partition: a consume topic must spread N
# messages thinly enough that none is dropped before it is read (about 2 MiB per partition here).
PARTITIONS=${PARTITIONS:-$(( N / 10000 > 16 ? (N + 9999) / 10000 : 16 ))}

# The Swift producer's defaults (Shared/Kafka/KafkaProducer.swift), given to kcat as well.
KCAT_PRODUCER_CONF=(-X enable.idempotence=true -X linger.ms=5 -X queue.buffering.max.messages=100000 -X message.timeout.ms=300000)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/twinstream-bench.XXXXXX")
BROKER_PID=

die() { echo "kafka-throughput: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local status=$?
    if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ "$N" =~ ^[0-9]+$ && "$N" -ge 1000 ]] || die "N must be an integer >= 1000 (got $N)"
[[ "$SIZE" =~ ^[0-9]+$ && "$SIZE" -ge 160 ]] || die "SIZE must be an integer >= 160 (got $SIZE)"
[[ "$RUNS" =~ ^[0-9]+$ && "$RUNS" -ge 1 ]] || die "RUNS must be a positive integer (got $RUNS)"
[[ "$CONSUME_BASELINE" == assign || "$CONSUME_BASELINE" == group ]] || die "CONSUME_BASELINE must be assign or group"
command -v "$KCAT" >/dev/null || die "kcat not found (apt-get install kcat)"
command -v timeout >/dev/null || die "timeout (coreutils) not found"

# ---------------------------------------------------------------------------------------------
# Build

if [[ -z "${TWINCTL:-}" ]]; then
    log "building twinctl (release)"
    (cd "$ROOT" && timeout 1800 swift build -c release --product twinctl >&2) || die "swift build failed"
    TWINCTL="$(cd "$ROOT" && swift build -c release --show-bin-path)/twinctl"
fi
[[ -x "$TWINCTL" ]] || die "twinctl not executable: $TWINCTL"

# ---------------------------------------------------------------------------------------------
# Broker: 1-partition produce topics (as the services' producers would see a single hot
# partition), and fresh topics per run for the consumers so no consumer group ever finds
# offsets committed by an earlier run.

topic_args=(--topic bench:1 --topic bench-kcat:1)
for r in $(seq 1 "$RUNS"); do
    topic_args+=(--topic "bench-consume-$r:$PARTITIONS")
done
log "starting embedded broker: $TWINCTL broker ${topic_args[*]}"
broker_cmd=("$TWINCTL" broker "${topic_args[@]}")
# stdbuf: the bootstrap line must reach the file now, not when twinctl's stdio buffer fills.
if command -v stdbuf >/dev/null; then broker_cmd=(stdbuf -oL "${broker_cmd[@]}"); fi
"${broker_cmd[@]}" >"$WORK/broker.out" 2>"$WORK/broker.err" &
BROKER_PID=$!
B=
for _ in $(seq 1 300); do
    B=$(grep -o 'bootstrap\.servers=[^[:space:]]*' "$WORK/broker.out" 2>/dev/null | head -n1 | cut -d= -f2- || true)
    [[ -n "$B" ]] && break
    kill -0 "$BROKER_PID" 2>/dev/null || { cat "$WORK/broker.err" >&2; die "twinctl broker exited early"; }
    sleep 0.1
done
[[ -n "$B" ]] || { cat "$WORK/broker.err" >&2; die "no bootstrap.servers line from twinctl broker within 30 s"; }
log "broker at $B"

# ---------------------------------------------------------------------------------------------
# Payloads: N telemetry readings, each exactly SIZE bytes of JSON, one per line; the keyed copy
# is `tenant/twinId<TAB>value` for kcat -K, so the consume topics fill evenly by twin.

log "generating $N readings of $SIZE bytes"
awk -v n="$N" -v size="$SIZE" -v keys="$KEYS" -v values="$WORK/values.ndjson" -v keyed="$WORK/keyed.tsv" '
BEGIN {
    srand(20261121)
    pad = sprintf("%*s", size, ""); gsub(/ /, "x", pad)
    for (i = 0; i < n; i++) {
        twin = sprintf("pump-%05d", i % keys)
        head = sprintf("{\"twinId\":\"%s\",\"eventId\":\"bench-%09d\",\"ts\":%d,\"model\":\"pump@1\",\"values\":{\"temperature\":%.2f,\"pressure\":%.3f,\"rpm\":%d},\"pad\":\"", \
            twin, i, 1795000000000 + i * 10, 60 + rand() * 30, 2 + rand() * 2, 1400 + int(rand() * 200))
        need = size - length(head) - 2
        if (need < 0) { print "payload prefix longer than SIZE" > "/dev/stderr"; exit 1 }
        value = head substr(pad, 1, need) "\"}"
        print value > values
        print "default/" twin "\t" value > keyed
    }
}' || die "payload generation failed"
head -n1 "$WORK/values.ndjson" > "$WORK/one.ndjson"
[[ $(wc -l < "$WORK/values.ndjson") -eq "$N" ]] || die "generated the wrong number of payloads"
[[ $(head -n1 "$WORK/values.ndjson" | tr -d '\n' | wc -c) -eq "$SIZE" ]] || die "payloads are not $SIZE bytes"

# ---------------------------------------------------------------------------------------------
# Helpers

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }

# offset TOPIC PARTITION -1|-2: the high (-1) or low (-2) watermark.
offset() {
    local out
    out=$(timeout 30 "$KCAT" -Q -b "$B" -t "$1:$2:$3" 2>&1 || true)
    out=$(awk '{ print $NF }' <<<"$out" | tail -n1)
    [[ "$out" =~ ^[0-9]+$ ]] || die "cannot read the $3 watermark of $1 [$2]"
    echo "$out"
}
# retained TOPIC PARTITIONS: messages currently held across all partitions.
retained() {
    local total=0 p hi lo
    for p in $(seq 0 $(( $2 - 1 ))); do
        hi=$(offset "$1" "$p" -1)
        lo=$(offset "$1" "$p" -2)
        total=$(( total + hi - lo ))
    done
    echo "$total"
}

# run_timed NAME plain|lines PROGRAM ARGS…: runs the program under TIMEOUT, its stdout kept in
# $WORK/NAME.out ("lines": only the number of lines); prints the wall time in seconds.
run_timed() {
    local name=$1 mode=$2 start end status=0
    shift 2
    start=$(now)
    if [[ $mode == lines ]]; then
        { timeout "$TIMEOUT" "$@" 2>"$WORK/$name.err" | wc -l >"$WORK/$name.out"; } || status=$?
    else
        timeout "$TIMEOUT" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || status=$?
    fi
    end=$(now)
    if [[ $status -ne 0 ]]; then
        tail -n 20 "$WORK/$name.err" >&2
        [[ $status -eq 124 ]] && die "$name: timed out after $TIMEOUT s: $*"
        die "$name: exit status $status: $*"
    fi
    elapsed "$start" "$end"
}

# The measured commands, as argument vectors for run_timed.
kcat_produce=("$KCAT" -P -b "$B" "${KCAT_PRODUCER_CONF[@]}")          # + -t TOPIC -l FILE
kcat_fill=("${kcat_produce[@]}" -K $'\t')                              # + -t TOPIC -l FILE
kcat_assign=("$KCAT" -C -b "$B" -o beginning -e -q -f '\n')            # + -t TOPIC -c COUNT
kcat_group=("$KCAT" -b "$B" -X auto.offset.reset=earliest -o beginning -e -q -f '\n')  # + -G GROUP -c COUNT TOPIC
twinctl_bench=("$TWINCTL" bench)
if command -v stdbuf >/dev/null; then twinctl_bench=(stdbuf -oL "${twinctl_bench[@]}"); fi

# The `… N messages in S seconds: R msg/s` line twinctl prints; echoes "count rate".
swift_report() {
    grep -Eo "$1 [0-9]+ messages in [0-9.eE+-]+ seconds: [0-9.eE+-]+ msg/s" "$WORK/$2.out" | tail -n1 \
        | awk '{ print $2, $(NF - 1) }'
}

expect_count() { # NAME GOT WANT
    [[ "$2" -eq "$3" ]] || die "$1: $2 messages where $3 were expected"
}

# Results: one line per measurement, "op tool run seconds_N seconds_1 [self_rate]".
RESULTS="$WORK/results.txt"
: > "$RESULTS"
record() { echo "$*" >> "$RESULTS"; }

# ---------------------------------------------------------------------------------------------
# Runs. Each measurement is timed for N messages and for 1 message: the second is the fixed
# cost (process start, connect, metadata, group join, final flush), so "net" = (N-1)/(tN-t1)
# is the steady-state rate; "gross" = N/tN includes it. Order alternates between runs.

measure_produce() { # RUN TOOL
    local r=$1 tool=$2 topic before after tN t1 count self=-
    case $tool in
        kcat)
            topic=bench-kcat
            t1=$(run_timed "p1-kcat-$r" plain "${kcat_produce[@]}" -t "$topic" -l "$WORK/one.ndjson")
            before=$(offset "$topic" 0 -1)
            tN=$(run_timed "pN-kcat-$r" plain "${kcat_produce[@]}" -t "$topic" -l "$WORK/values.ndjson")
            ;;
        twinctl)
            topic=bench
            t1=$(run_timed "p1-twinctl-$r" plain "${twinctl_bench[@]}" produce --brokers "$B" --topic "$topic" --count 1 --size "$SIZE")
            before=$(offset "$topic" 0 -1)
            tN=$(run_timed "pN-twinctl-$r" plain "${twinctl_bench[@]}" produce --brokers "$B" --topic "$topic" --count "$N" --size "$SIZE")
            read -r count self < <(swift_report produced "pN-twinctl-$r") || die "twinctl bench produce printed no 'produced … msg/s' line"
            expect_count "twinctl bench produce (reported)" "$count" "$N"
            ;;
    esac
    after=$(offset "$topic" 0 -1)
    expect_count "$tool produce (broker high watermark)" "$(( after - before ))" "$N"
    record produce "$tool" "$r" "$tN" "$t1" "$self"
    log "run $r produce $tool: $N in $tN s (1 message: $t1 s)"
}

measure_consume() { # RUN TOOL
    local r=$1 tool=$2 tN t1 count self=-
    # The 1-message read uses the same topic: assign mode commits nothing and the group run has
    # its own fresh group. (From a tiny separate topic kcat took ~50 ms instead of ~15 ms.)
    local topic="bench-consume-$r"
    case $tool in
        kcat-assign)
            t1=$(run_timed "c1-$tool-$r" lines "${kcat_assign[@]}" -t "$topic" -c 1)
            tN=$(run_timed "cN-$tool-$r" lines "${kcat_assign[@]}" -t "$topic" -c "$N")
            expect_count "kcat consume (assign)" "$(tr -d ' ' < "$WORK/cN-$tool-$r.out")" "$N"
            ;;
        kcat-group)
            t1=$(run_timed "c1-$tool-$r" lines "${kcat_group[@]}" -G "kcat-one-$$-$r" -c 1 "$topic")
            tN=$(run_timed "cN-$tool-$r" lines "${kcat_group[@]}" -G "kcat-bench-$$-$r" -c "$N" "$topic")
            expect_count "kcat consume (group)" "$(tr -d ' ' < "$WORK/cN-$tool-$r.out")" "$N"
            ;;
        twinctl)
            t1=$(run_timed "c1-$tool-$r" plain "${twinctl_bench[@]}" consume --brokers "$B" --topic "$topic" --count 1 --partitions "$PARTITIONS")
            tN=$(run_timed "cN-$tool-$r" plain "${twinctl_bench[@]}" consume --brokers "$B" --topic "$topic" --count "$N" --partitions "$PARTITIONS")
            read -r count self < <(swift_report consumed "cN-$tool-$r") || die "twinctl bench consume printed no 'consumed … msg/s' line"
            expect_count "twinctl bench consume (reported)" "$count" "$N"
            ;;
    esac
    record consume "$tool" "$r" "$tN" "$t1" "$self"
    log "run $r consume $tool: $N in $tN s (1 message: $t1 s)"
}

for r in $(seq 1 "$RUNS"); do
    # Fill this run's consume topics: keyed by twin, so partitions fill evenly.
    log "run $r: filling bench-consume-$r ($PARTITIONS partitions)"
    run_timed "fill-$r" plain "${kcat_fill[@]}" -t "bench-consume-$r" -l "$WORK/keyed.tsv" >/dev/null
    held=$(retained "bench-consume-$r" "$PARTITIONS")
    [[ "$held" -eq "$N" ]] || die "the broker kept $held of $N messages in bench-consume-$r (mock cluster keeps ~5 MiB per partition): raise PARTITIONS"

    if (( r % 2 == 1 )); then order=(kcat twinctl); else order=(twinctl kcat); fi
    for tool in "${order[@]}"; do measure_produce "$r" "$tool"; done
    if (( r % 2 == 1 )); then order=(kcat-assign kcat-group twinctl); else order=(twinctl kcat-group kcat-assign); fi
    for tool in "${order[@]}"; do measure_consume "$r" "$tool"; done
done

# ---------------------------------------------------------------------------------------------
# Report

# stats OP TOOL → "gross_best gross_median net_best net_median self_best" in msg/s ("nan" when
# undefined). gross = N / tN per run. net = (N-1) / (tN - t1) from the fastest tN and the fastest
# t1 across runs (best), or from the medians (median): pairing within a run would add two noises.
stats() {
    awk -v op="$1" -v tool="$2" -v n="$N" '
    function sort(a, k,   i, j, t) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t } }
    function median(a, k) { return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
    function rate(count, seconds) { return seconds > 0 ? sprintf("%.0f", count / seconds) : "nan" }
    $1 == op && $2 == tool {
        k++; tn[k] = $4; t1[k] = $5
        if ($6 != "-" && $6 + 0 > self) self = $6 + 0
    }
    END {
        if (k == 0) { print "nan nan nan nan -"; exit }
        sort(tn, k); sort(t1, k)
        printf "%s %s %s %s %s\n", rate(n, tn[1]), rate(n, median(tn, k)), rate(n - 1, tn[1] - t1[1]), rate(n - 1, median(tn, k) - median(t1, k)), (self ? sprintf("%.0f", self) : "-")
    }' "$RESULTS"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
verdict() { awk -v r="$1" -v t="$TARGET" 'BEGIN { if (r == "n/a") print "n/a"; else if (r + 0 >= t + 0) print "PASS"; else print "FAIL" }'; }

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
echo
echo "TwinStream Kafka client throughput — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "  $N messages x $SIZE B per measurement, best of $RUNS runs; broker: twinctl broker (librdkafka mock) at $B"
echo "  produce topics: 1 partition; consume topics: $PARTITIONS partitions, keyed by $KEYS twins"
echo "  kcat: $("$KCAT" -V 2>&1 | grep -Eo 'Version [^ ]+ .*librdkafka [^ ]+' | head -n1)"
echo "  host: ${cpu:-unknown cpu}, $(nproc) cpus"
echo
printf '%-8s %-16s %13s %13s %13s %13s %13s\n' op client "gross best" "gross median" "net best" "net median" "self-reported"
declare -A G NB NM
for row in "produce kcat" "produce twinctl" "consume kcat-assign" "consume kcat-group" "consume twinctl"; do
    read -r op tool <<<"$row"
    read -r bg mg bn mn bs < <(stats "$op" "$tool")
    G[$op/$tool]=$bg; NB[$op/$tool]=$bn; NM[$op/$tool]=$mn
    printf '%-8s %-16s %13s %13s %13s %13s %13s\n' "$op" "$tool" "$bg" "$mg" "$bn" "$mn" "$bs"
done
echo "(msg/s. gross: N / wall time of the whole command. net: (N-1) / (wall time for N - wall time for 1 message),"
echo " i.e. without process start, connect, metadata, group join (the mock holds a new group's first join 3 s)"
echo " and final flush. self-reported: best rate from twinctl's own output line.)"
echo

status=0
echo "Swift / kcat (target >= $TARGET, judged on the net rate from the best runs):"
printf '  %-34s %8s %8s %8s  %s\n' comparison "gross" "net" "net med" verdict
for row in "produce produce/twinctl produce/kcat" \
           "consume-vs-kcat-assign consume/twinctl consume/kcat-assign" \
           "consume-vs-kcat-group consume/twinctl consume/kcat-group"; do
    read -r label swift kc <<<"$row"
    rg=$(ratio "${G[$swift]}" "${G[$kc]}")
    rn=$(ratio "${NB[$swift]}" "${NB[$kc]}")
    rm=$(ratio "${NM[$swift]}" "${NM[$kc]}")
    v=$(verdict "$rn")
    if [[ $label == consume-vs-* && $label != "consume-vs-kcat-$CONSUME_BASELINE" ]]; then
        v="(info: CONSUME_BASELINE=$CONSUME_BASELINE)"
    elif [[ $v == FAIL ]]; then
        status=1
    fi
    printf '  %-34s %8s %8s %8s  %s\n' "$label" "$rg" "$rn" "$rm" "$v"
done

if [[ "$STRICT" == 1 ]]; then exit "$status"; fi
exit 0
