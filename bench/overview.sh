#!/usr/bin/env bash
# The admin overview over a million request logs on SQLite (issue 12: "the overview over a million
# request-log rows answers in under 200 ms, served from rollups, not scans"). Run by `make bench`
# after bench/run.sh, or alone: `bash bench/overview.sh`. bench/README.md records the figures.
#
# What it does:
#   1. creates a SQLite database with the gateway's migrations (`switchyard migrate run`);
#   2. loads BENCH_OVERVIEW_ROWS request logs (default 1,000,000) spread evenly over the week
#      before now, with the sqlite3 shell: 50 tokens, each using 2 of 8 models, each model served
#      by one of 3 providers; 95% 200, 3% 502, 2% 429; latencies 40 ms to 6 s, a third streamed
#      with a time to first token; so about 100 rollup keys an hour (16,800 rollup rows a week);
#   3. reverts and re-applies the rollup migration, which backfills usage_hourly from those logs
#      (the path an existing deployment takes on upgrade), and times it;
#   4. starts the gateway on that database and times, through the real server with curl,
#      `GET /admin/metrics/summary`, `/timeseries` (hourly buckets) and `/top` (by model, token,
#      provider) for the last hour, day and week, BENCH_OVERVIEW_RUNS times each (default 10),
#      printing the median and the slowest against the 200 ms target.
#
# Environment:
#   BENCH_GATEWAY_BIN     gateway binary (default: `cargo build --release --locked`, then
#                         target/release/switchyard)
#   BENCH_OVERVIEW_ROWS   request logs to load (default 1000000)
#   BENCH_OVERVIEW_RUNS   timed calls per route and range (default 10)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ROWS="${BENCH_OVERVIEW_ROWS:-1000000}"
RUNS="${BENCH_OVERVIEW_RUNS:-10}"
TARGET_MS=200
MASTER_KEY="bench-master-key-0123456789abcdef0123"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-overview.XXXXXX")"
GW_PID=""

cleanup() {
    if [[ -n "$GW_PID" ]]; then
        kill "$GW_PID" 2>/dev/null || true
        wait "$GW_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

die() {
    echo "overview bench: $*" >&2
    exit 1
}

command -v sqlite3 >/dev/null || die "needs the sqlite3 shell (apt-get install sqlite3)"
command -v curl >/dev/null || die "needs curl"

if [[ -n "${BENCH_GATEWAY_BIN:-}" ]]; then
    BIN="$BENCH_GATEWAY_BIN"
else
    cargo build --release --locked --bin switchyard >&2
    BIN="$ROOT/target/release/switchyard"
fi
[[ -x "$BIN" ]] || die "no gateway binary at $BIN"
BIN="$(realpath "$BIN")"
# The gateway writes its generated secret and usage journal under the working directory.
cd "$WORK"

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
DB="$WORK/overview.db"
cat >"$WORK/overview.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"

[database]
url = "sqlite://$DB"

[admin]
master_key = "$MASTER_KEY"
key_file = "$WORK/admin_ed25519.key"

[logging]
level = "warning"

# Never called: the bench reads metrics only.
[[providers]]
name = "mock"
kind = "openai-compatible"
base_url = "http://127.0.0.1:9/v1"
keys = ["unused"]
models = ["m0"]
EOF
run() { "$BIN" --config "$WORK/overview.toml" "$@"; }

run migrate run >/dev/null
NOW_MS="$(($(date +%s) * 1000))"
WEEK_MS=$((7 * 24 * 3600 * 1000))
echo "loading $ROWS request logs over the last week..." >&2
load_start=$(date +%s.%N)
sqlite3 "$DB" >/dev/null <<EOF
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $ROWS - 1),
r AS (
    SELECT i,
        $NOW_MS - $WEEK_MS + (i * $WEEK_MS) / $ROWS AS at,
        1 + (i % 50) AS token,
        ((i % 50) + (i / 50) % 2) % 8 AS model,
        (i * 7919) % 100 AS roll,
        (i * 104729) % 1000 AS spread
    FROM n
)
INSERT INTO request_logs (created_at, request_id, token_id, user_id, endpoint, provider, key_id,
    requested_model, upstream_model, status, error_class, latency_ms, ttft_ms, prompt_tokens,
    completion_tokens, cost_nanos, priced, tokens_estimated, stream, attempts, record_id)
SELECT at, 'req_' || i, token, 1, '/v1/chat/completions', 'p' || (model % 3), 'key-1',
    'm' || model, 'm' || model,
    CASE WHEN roll < 95 THEN 200 WHEN roll < 98 THEN 502 ELSE 429 END,
    CASE WHEN roll < 95 THEN NULL WHEN roll < 98 THEN 'upstream_failed' ELSE 'rate_limited' END,
    40 + spread * 6,
    CASE WHEN roll < 95 AND i % 3 = 0 THEN 20 + spread / 2 ELSE NULL END,
    CASE WHEN roll < 95 THEN 100 + spread ELSE 0 END,
    CASE WHEN roll < 95 THEN 20 + spread / 4 ELSE 0 END,
    CASE WHEN roll < 95 THEN (100 + spread) * 2500 + (20 + spread / 4) * 10000 ELSE 0 END,
    model != 7, FALSE, i % 3 = 0, 1, 'rec_' || i
FROM r;
COMMIT;
EOF
load_s=$(echo "$(date +%s.%N) - $load_start" | bc)

# Revert the migrations down to and including the hourly rollup's, then run
# them again: the hourly rollup backfills from request_logs and the daily one
# from the hourly (the upgrade path of a database that has only logs).
has_hourly() { [[ "$(sqlite3 "$DB" "SELECT COUNT(*) FROM sqlite_master WHERE name = 'usage_hourly'")" == 1 ]]; }
for _ in $(seq 1 20); do
    has_hourly || break
    run migrate revert >/dev/null
done
has_hourly && die "could not revert the rollup migrations"
backfill_start=$(date +%s.%N)
run migrate run >/dev/null
backfill_s=$(echo "$(date +%s.%N) - $backfill_start" | bc)
logs=$(sqlite3 "$DB" "SELECT COUNT(*) FROM request_logs")
rollups=$(sqlite3 "$DB" "SELECT COUNT(*) FROM usage_hourly")
daily=$(sqlite3 "$DB" "SELECT COUNT(*) FROM usage_daily_rollup")

# Not through `run`: a backgrounded function is a subshell, and killing it
# would leave the gateway running.
"$BIN" --config "$WORK/overview.toml" serve >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
URL="http://127.0.0.1:$PORT"
for _ in $(seq 1 300); do
    curl -sf -m 1 -o /dev/null "$URL/healthz" && break
    kill -0 "$GW_PID" 2>/dev/null || { tail -n 40 "$WORK/gateway.log" >&2; die "the gateway exited"; }
    sleep 0.1
done

# time_route PATH: median and slowest of RUNS calls, in ms ("median max").
time_route() {
    local path="$1" times=() i
    curl -sf -o /dev/null -H "Authorization: Bearer $MASTER_KEY" "$URL$path" \
        || die "GET $path failed"
    for i in $(seq 1 "$RUNS"); do
        times+=("$(curl -sf -o /dev/null -w '%{time_total}' \
            -H "Authorization: Bearer $MASTER_KEY" "$URL$path")")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '
        { t[NR] = $1 * 1000 }
        END { printf "%.1f %.1f\n", t[int((NR + 1) / 2)], t[NR] }'
}

now_s=$(date +%s)
echo
echo "Admin overview over $logs request logs ($rollups hourly and $daily daily rollup rows), SQLite, $(nproc) cores"
echo "binary: $BIN"
printf 'load: %.1f s; rollup backfill by the migration: %.1f s\n' "$load_s" "$backfill_s"
printf '%-64s %10s %10s  %s\n' "route" "median ms" "max ms" "target < ${TARGET_MS} ms"
missed=0
for range in hour day week; do
    case "$range" in
        hour) span=3600 ;;
        day) span=86400 ;;
        week) span=604800 ;;
    esac
    from=$((now_s - span))
    for path in \
        "/admin/metrics/summary?from=$from" \
        "/admin/metrics/timeseries?bucket=hour&from=$from" \
        "/admin/metrics/top?by=model&range=$range" \
        "/admin/metrics/top?by=token&range=$range" \
        "/admin/metrics/top?by=provider&range=$range"; do
        read -r median slowest < <(time_route "$path")
        verdict=met
        if awk -v m="$slowest" -v t="$TARGET_MS" 'BEGIN { exit !(m >= t) }'; then
            verdict=MISSED
            missed=1
        fi
        printf '%-64s %10s %10s  %s\n' "$path" "$median" "$slowest" "$verdict"
    done
done
exit "$missed"
