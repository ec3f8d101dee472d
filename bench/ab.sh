#!/usr/bin/env bash
# A/B of two gateway builds: the measurement behind each row of bench/README.md's "Where the time
# goes". Starts the mock and two gateways with the bench's settings, one per binary,
# then alternates wrk runs between them (A then B, B then A, ...), so that the machine's drift
# (on the shared 2-core box, ~10% from one minute to the next) weighs on both alike. Prints each
# pair, then the median over the pairs of B/A for the CPU per request (the whole process, and its
# database threads alone, the less noisy figure for a change there), the throughput and the p50,
# with how many pairs B was lower, and each gateway's peak RSS. On PostgreSQL it also reads the
# database server's CPU per request: its backends connected to the gateway's database (the
# server's background work, checkpoints and autovacuum, is left out: it scatters the figure).
#
# Usage: bash bench/ab.sh A_BINARY B_BINARY
#   e.g. git stash; cargo build --release --locked --bin switchyard; cp target/release/switchyard /tmp/a
#        git stash pop; cargo build --release --locked --bin switchyard
#        bash bench/ab.sh /tmp/a target/release/switchyard
#
# Environment:
#   AB_ROW       json (default), limited (a token with every limit), stream (20 chunks passed
#                through) or xlat (20 chunks translated from an Anthropic upstream)
#   AB_PAIRS     pairs of runs (default 6)
#   AB_DURATION  length of each run (default 5s)
#   AB_CONNS     connections (default 16)
#   AB_DATABASE  sqlite (default) or postgres: a database each, created on AB_POSTGRES_URL
#                (default postgres://postgres@127.0.0.1:5432) and dropped at exit
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

[[ $# == 2 ]] || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
A_BIN="$(realpath "$1")"
B_BIN="$(realpath "$2")"
ROW="${AB_ROW:-json}"
PAIRS="${AB_PAIRS:-6}"
DURATION="${AB_DURATION:-5s}"
CONNS="${AB_CONNS:-16}"
DATABASE="${AB_DATABASE:-sqlite}"
POSTGRES_URL="${AB_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}"
STREAM_CHUNKS=20
MASTER_KEY="bench-master-key-0123456789abcdef0123"
WRK_THREADS=2
case "$ROW" in
json | limited) STREAM=0 MODEL=mock-gpt ;;
stream) STREAM=1 MODEL=mock-gpt ;;
xlat) STREAM=1 MODEL=mock-claude ;;
*) echo "ab: AB_ROW must be json, limited, stream or xlat" >&2; exit 2 ;;
esac
[[ "$DATABASE" == sqlite || "$DATABASE" == postgres ]] ||
    { echo "ab: AB_DATABASE must be sqlite or postgres" >&2; exit 2; }
[[ "$PAIRS" =~ ^[1-9][0-9]*$ ]] || { echo "ab: AB_PAIRS must be a positive count" >&2; exit 2; }
for binary in "$A_BIN" "$B_BIN"; do
    [[ -x "$binary" ]] || { echo "ab: $binary is not an executable" >&2; exit 2; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-ab.XXXXXX")"
PIDS=()
DATABASES=()
cleanup() {
    local database
    stop_started
    for database in ${DATABASES[@]+"${DATABASES[@]}"}; do
        dropdb --if-exists --maintenance-db="$POSTGRES_URL/postgres" "$database" >/dev/null 2>&1 ||
            echo "ab: could not drop the database $database" >&2
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '%s\n' "$*"; }
die() {
    log "ab: $*" >&2
    exit 1
}
OUT=/dev/null # check_chat's copies of a failed answer

command -v wrk >/dev/null 2>&1 || die "wrk is required (apt-get install -y wrk)"
cargo build --release --locked -p mock-upstream --bin mock-upstream
start_mock "$ROOT/target/release/mock-upstream"
write_gateway_template "$MOCK_URL"

# Nanoseconds on the CPU of a gateway's database threads (`switchyard-db`) alive now.
db_thread_ns() {
    local task total=0
    for task in /proc/"$1"/task/*; do
        [[ "$(cat "$task/comm" 2>/dev/null)" == switchyard-db ]] || continue
        total=$((total + $(awk '{ print $1 }' "$task/schedstat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}

# server_ticks DATABASE: "pid ticks" of each PostgreSQL backend connected to DATABASE (its
# gateway's connections, not the server's background work), a line each; nothing on SQLite.
server_ticks() {
    [[ "$DATABASE" == postgres ]] || return 0
    local pid
    for pid in $(psql -d "$POSTGRES_URL/postgres" -Atc \
        "SELECT pid FROM pg_stat_activity WHERE datname = '$1'"); do
        echo "$pid $(cpu_ticks "$pid" 2>/dev/null || echo 0)"
    done
}

# server_ticks_since BEFORE DATABASE: the ticks DATABASE's backends took since the server_ticks
# output BEFORE (a backend opened meanwhile counts whole).
server_ticks_since() {
    awk 'NR == FNR { before[$1] = $2; next } { total += $2 - before[$1] } END { print total + 0 }' \
        <(printf '%s\n' "$1") <(server_ticks "$2")
}

declare -A PID URL TOKEN DB_NAME
for side in A B; do
    binary_var="${side}_BIN"
    GATEWAY_BIN="${!binary_var}"
    if [[ "$DATABASE" == postgres ]]; then
        database="switchyard_ab_$$_$side"
        createdb --maintenance-db="$POSTGRES_URL/postgres" "$database" ||
            die "could not create a database at $POSTGRES_URL"
        DATABASES+=("$database")
        DB_NAME[$side]="$database"
        start_gateway "ab-$side" "$POSTGRES_URL/$database"
    else
        start_gateway "ab-$side" "sqlite://$WORK/ab-$side.db"
    fi
    PID[$side]="$GW_PID"
    URL[$side]="$GW_URL"
    if [[ "$ROW" == limited ]]; then
        TOKEN[$side]="$(create_token "$GW_URL" "$LIMITED_TOKEN_JSON")"
    else
        TOKEN[$side]="$(create_token "$GW_URL" '{"name":"ab"}')"
    fi
    check_chat "$GW_URL" "${TOKEN[$side]}" "$MODEL" "$STREAM"
    # A warm-up: the first seconds of a fresh gateway (its caches, the database's pages) are
    # not what either binary costs.
    BENCH_STREAM="$STREAM" BENCH_MODEL="$MODEL" chat_load "$GW_URL" "${TOKEN[$side]}" "$CONNS" 2s /dev/null
done

# run SIDE: one measured run; prints "req/s p50_ms cpu_us_per_request db_us_per_request
# server_us_per_request".
run() {
    local side="$1" pid raw ticks_before ticks_after db_before db_after server_before server_ticks parsed
    pid="${PID[$side]}"
    raw="$WORK/wrk-$side.txt"
    require_alive "$pid" "gateway $side"
    ticks_before="$(cpu_ticks "$pid")"
    db_before="$(db_thread_ns "$pid")"
    server_before="$(server_ticks "${DB_NAME[$side]:-}")"
    BENCH_STREAM="$STREAM" BENCH_MODEL="$MODEL" \
        chat_load "${URL[$side]}" "${TOKEN[$side]}" "$CONNS" "$DURATION" "$raw" ||
        { cat "$raw" >&2; die "wrk failed"; }
    # The run's own database writes belong to it (see usage_drained).
    usage_drained "${URL[$side]}" "gateway $side" >&2
    ticks_after="$(cpu_ticks "$pid")"
    db_after="$(db_thread_ns "$pid")"
    server_ticks="$(server_ticks_since "$server_before" "${DB_NAME[$side]:-}")"
    parsed="$(parse_wrk "$raw")"
    [[ "$(awk '{ print $5 + $6 }' <<<"$parsed")" == 0 ]] ||
        die "gateway $side answered with errors: $(grep '^bench:' "$raw")"
    awk -v t="$((ticks_after - ticks_before))" -v hz="$CLK_TCK" -v db="$((db_after - db_before))" \
        -v server="$server_ticks" \
        '{ printf "%s %s %.2f %.2f %.2f\n", $1, $2, t / hz * 1e6 / $4, db / 1e3 / $4, server / hz * 1e6 / $4 }' \
        <<<"$parsed"
}

log "A: $A_BIN (pid ${PID[A]})"
log "B: $B_BIN (pid ${PID[B]})"
log "row $ROW on $DATABASE, $PAIRS pairs of $DURATION at c=$CONNS; per run: req/s, p50 ms, CPU us/req," \
    "database threads us/req, database server us/req"
: >"$WORK/pairs.txt"
for pair in $(seq 1 "$PAIRS"); do
    if ((pair % 2)); then
        a="$(run A)"
        b="$(run B)"
    else
        b="$(run B)"
        a="$(run A)"
    fi
    log "pair $pair: A $a | B $b"
    echo "$a $b" >>"$WORK/pairs.txt"
done

python3 - "$WORK/pairs.txt" <<'PY'
import statistics, sys
pairs = [list(map(float, line.split())) for line in open(sys.argv[1]) if line.strip()]
for name, col in [("req/s", 0), ("p50", 1), ("CPU per request", 2), ("database threads", 3),
                  ("database server", 4)]:
    ratios = [b[col] / a[col] for a, b in ((p[:5], p[5:]) for p in pairs) if a[col] > 0]
    if not ratios:
        continue
    lower = sum(r < 1 for r in ratios)
    print(f"{name:17} B/A median {statistics.median(ratios):.3f}, mean {statistics.mean(ratios):.3f}"
          f" (B lower in {lower} of {len(ratios)}); A median {statistics.median(p[col] for p in pairs):.2f},"
          f" B median {statistics.median(p[5 + col] for p in pairs):.2f}")
PY
for side in A B; do
    log "peak RSS $side: $(awk '/VmHWM/ { print $2, $3 }' "/proc/${PID[$side]}/status")"
done
