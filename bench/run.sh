#!/usr/bin/env bash
# Switchyard load benchmark (DESIGN.md section 7), run by `make bench` from the repository root.
#
# Measures, in one run, the mock upstream directly and the same mock through the gateway (token
# auth, budget checks and usage logging on), at 16 and 64 concurrent connections, and prints
# requests/s, p50/p99 latency, the gateway's overhead, its CPU time per request and peak RSS.
#
# Environment:
#   BENCH_DURATION     length of each measured wrk run (default 10s)
#   BENCH_WARMUP       warm-up run per target before measuring, 0 to skip (default 2s)
#   BENCH_CONCURRENCY  space-separated connection counts (default "16 64")
#   BENCH_DIRECT_ONLY  1 to measure only the mock (while the gateway does not build yet)
#   BENCH_GATEWAY_BIN  gateway binary to measure instead of building target/release/switchyard
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${BENCH_DURATION:-10s}"
WARMUP="${BENCH_WARMUP:-2s}"
CONCURRENCY="${BENCH_CONCURRENCY:-16 64}"
DIRECT_ONLY="${BENCH_DIRECT_ONLY:-0}"
WRK_THREADS=2
MASTER_KEY="bench-master-key-0123456789abcdef0123"
RESULTS_DIR="$ROOT/bench/results"
OUT="$RESULTS_DIR/latest.txt"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-bench.XXXXXX")"
PIDS=()

cleanup() {
    local pid
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$RESULTS_DIR"
: >"$OUT"

# Progress and results go to the terminal and the results file; raw wrk output to the file only.
log() { printf '%s\n' "$*" | tee -a "$OUT"; }
die() {
    log "bench: $*"
    exit 1
}

# --- tools ------------------------------------------------------------------------------------

if ! command -v wrk >/dev/null 2>&1; then
    log "bench: installing wrk"
    if ! apt-get install -y wrk >"$WORK/apt.log" 2>&1; then
        { apt-get update && apt-get install -y wrk; } >>"$WORK/apt.log" 2>&1 ||
            { cat "$WORK/apt.log" >&2; die "could not install wrk (apt-get install -y wrk)"; }
    fi
fi
for tool in curl python3 awk; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

log "bench: building release binaries"
if [[ "$DIRECT_ONLY" == 1 || -n "${BENCH_GATEWAY_BIN:-}" ]]; then
    cargo build --release -p mock-upstream --bin mock-upstream
else
    cargo build --release -p switchyard -p mock-upstream --bin switchyard --bin mock-upstream ||
        die "the gateway does not build; BENCH_DIRECT_ONLY=1 measures the mock alone"
fi
MOCK_BIN="$ROOT/target/release/mock-upstream"
GATEWAY_BIN="${BENCH_GATEWAY_BIN:-$ROOT/target/release/switchyard}"

# --- helpers ----------------------------------------------------------------------------------

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat, counted after
# the parenthesised command name, which may contain spaces).
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
CLK_TCK="$(getconf CLK_TCK)"

# Dies (with the gateway's last log lines) if a measured process has exited.
require_alive() {
    if ! kill -0 "$1" 2>/dev/null; then
        [[ "$2" == gateway ]] && tail -n 40 "$WORK/gateway.log" >&2
        die "the $2 process ($1) has exited"
    fi
}

# wrk's human units (us, ms, s, m) to milliseconds.
# Prints: requests/s p50_ms p99_ms requests non2xx socket_errors
parse_wrk() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /m$/) return v * 60000
            if (v ~ /s$/) return v * 1000
            return v + 0
        }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        $1 == "Requests/sec:" { rps = $2 }
        $1 == "bench:" {
            for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        }
        END {
            printf "%.0f %.3f %.3f %d %d %d\n", rps, p50, p99, f["requests"], f["non2xx"],
                f["connect"] + f["read"] + f["write"] + f["timeout"]
        }
    ' "$1"
}

# Fails unless one chat completion through URL with AUTH answers 200.
check_chat() {
    local url="$1" auth="$2" status
    status="$(curl -s -m 10 -o "$WORK/check.json" -w '%{http_code}' -X POST "$url/v1/chat/completions" \
        -H "Authorization: Bearer $auth" -H 'content-type: application/json' \
        -d '{"model":"mock-gpt","messages":[{"role":"user","content":"hello"}]}' || true)"
    if [[ "$status" != 200 ]]; then
        log "bench: a check request to $url answered ${status:-nothing}:"
        cat "$WORK/check.json" 2>/dev/null | tee -a "$OUT" || true
        exit 1
    fi
}

declare -A RESULT CPU_US

# run_wrk NAME URL AUTH PID CONCURRENCY: one measured run; CPU counted for PID.
run_wrk() {
    local name="$1" url="$2" auth="$3" pid="$4" conns="$5" raw before after parsed requests
    raw="$WORK/wrk-$name-$conns.txt"
    require_alive "$pid" "$name"
    before="$(cpu_ticks "$pid")"
    BENCH_AUTH="$auth" wrk -t"$WRK_THREADS" -c"$conns" -d"$DURATION" --latency \
        -s "$ROOT/bench/chat.lua" "$url" >"$raw" 2>&1 || { cat "$raw" >&2; die "wrk failed"; }
    require_alive "$pid" "$name"
    after="$(cpu_ticks "$pid")"
    { echo "--- wrk $name c=$conns"; cat "$raw"; } >>"$OUT"
    parsed="$(parse_wrk "$raw")"
    RESULT["$name:$conns"]="$parsed"
    requests="$(awk '{ print $4 }' <<<"$parsed")"
    CPU_US["$name:$conns"]="$(awk -v t="$((after - before))" -v hz="$CLK_TCK" -v n="$requests" \
        'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "n/a" }')"
    log "bench: $name c=$conns done: $(awk '{ printf "%s req/s, p50 %s ms, p99 %s ms", $1, $2, $3 }' <<<"$parsed")"
    if [[ "$(awk '{ print $5 + $6 }' <<<"$parsed")" != 0 ]]; then
        log "bench: WARNING: $name c=$conns had $(awk '{ printf "%d non-2xx answers and %d socket errors", $5, $6 }' <<<"$parsed")"
    fi
}

warm_up() {
    local url="$1" auth="$2"
    [[ "$WARMUP" == 0 || "$WARMUP" == 0s ]] && return 0
    BENCH_AUTH="$auth" wrk -t"$WRK_THREADS" -c16 -d"$WARMUP" -s "$ROOT/bench/chat.lua" "$url" \
        >/dev/null 2>&1 || true
}

# --- mock -------------------------------------------------------------------------------------

"$MOCK_BIN" --listen 127.0.0.1:0 >"$WORK/mock.out" 2>&1 &
MOCK_PID=$!
PIDS+=("$MOCK_PID")
MOCK_ADDR=""
for _ in $(seq 1 100); do
    MOCK_ADDR="$(sed -n 's/^listening on //p' "$WORK/mock.out")"
    [[ -n "$MOCK_ADDR" ]] && break
    kill -0 "$MOCK_PID" 2>/dev/null || { cat "$WORK/mock.out" >&2; die "the mock exited"; }
    sleep 0.1
done
[[ -n "$MOCK_ADDR" ]] || die "the mock did not start"
MOCK_URL="http://$MOCK_ADDR"

log "Switchyard benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ)"
log "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores," \
    "$(wrk -v 2>&1 | head -1 | awk '{ print $1, $2 }'), $WRK_THREADS wrk threads, $DURATION per run"
log "mock on $MOCK_ADDR (pid $MOCK_PID)"

# --- gateway ----------------------------------------------------------------------------------

GATEWAY_PID=""
if [[ "$DIRECT_ONLY" != 1 ]]; then
    GATEWAY_PORT="$(free_port)"
    GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT"
    cat >"$WORK/bench.toml" <<EOF
[server]
listen = "127.0.0.1:$GATEWAY_PORT"

[admin]
master_key = "$MASTER_KEY"

[logging]
level = "warning"

[[providers]]
name = "mock"
kind = "openai-compatible"
base_url = "$MOCK_URL/v1"
keys = ["ok-bench-1", "ok-bench-2"]
models = ["mock-gpt"]

# The same mock behind three keys, one of which always answers 500: its
# circuit opens after 3 failures and it is then only probed.
[[providers]]
name = "flaky"
kind = "openai-compatible"
base_url = "$MOCK_URL/v1"
keys = ["ok-flaky-1", "ok-flaky-2", "e500-flaky-3"]
models = ["mock-gpt-flaky"]

# Anthropic's wire format on the same mock: OpenAI clients' requests and
# streams are translated both ways (issue 4's translated-stream overhead).
[[providers]]
name = "claude"
kind = "anthropic"
base_url = "$MOCK_URL/v1"
keys = ["ok-claude-1", "ok-claude-2"]
models = ["mock-claude"]

[[prices]]
model = "mock-gpt"
input_per_mtok = 2.5
output_per_mtok = 10.0
EOF
    SWITCHYARD__DATABASE__URL="sqlite://$WORK/bench.db" \
        "$GATEWAY_BIN" serve --config "$WORK/bench.toml" >"$WORK/gateway.log" 2>&1 &
    GATEWAY_PID=$!
    PIDS+=("$GATEWAY_PID")
    ready=0
    for _ in $(seq 1 300); do
        if curl -sf -m 1 -o /dev/null "$GATEWAY_URL/healthz"; then
            ready=1
            break
        fi
        if ! kill -0 "$GATEWAY_PID" 2>/dev/null; then
            tail -n 40 "$WORK/gateway.log" >&2
            die "the gateway exited during startup"
        fi
        sleep 0.1
    done
    if [[ "$ready" != 1 ]]; then
        tail -n 40 "$WORK/gateway.log" >&2
        die "the gateway was not ready within 30 s"
    fi
    log "gateway on 127.0.0.1:$GATEWAY_PORT (pid $GATEWAY_PID)"

    token_json="$(curl -s -m 10 -X POST "$GATEWAY_URL/admin/tokens" \
        -H "Authorization: Bearer $MASTER_KEY" -H 'content-type: application/json' \
        -d '{"name":"bench"}')"
    TOKEN="$(python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])' \
        <<<"$token_json" 2>/dev/null)" || die "could not create a token: $token_json"

    # A token with every limit on (issue 5): money and token budgets held in
    # the database, RPM, TPM, parallelism and a daily quota in memory, all
    # far above what the run spends so nothing is refused.
    limited_json="$(curl -s -m 10 -X POST "$GATEWAY_URL/admin/tokens" \
        -H "Authorization: Bearer $MASTER_KEY" -H 'content-type: application/json' \
        -d '{"name":"bench-limited","budget_usd":1000000,"budget_tokens":100000000000,
             "rpm":100000000,"tpm":1000000000,"max_parallel":10000,
             "quotas":[{"period":"day","kind":"requests","limit":100000000}]}')"
    LIMITED_TOKEN="$(python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])' \
        <<<"$limited_json" 2>/dev/null)" || die "could not create the limited token: $limited_json"
fi

# --- runs -------------------------------------------------------------------------------------

check_chat "$MOCK_URL" ok-bench-1
warm_up "$MOCK_URL" ok-bench-1
for c in $CONCURRENCY; do
    run_wrk direct "$MOCK_URL" ok-bench-1 "$MOCK_PID" "$c"
done

if [[ -n "$GATEWAY_PID" ]]; then
    check_chat "$GATEWAY_URL" "$TOKEN"
    warm_up "$GATEWAY_URL" "$TOKEN"
    for c in $CONCURRENCY; do
        run_wrk gateway "$GATEWAY_URL" "$TOKEN" "$GATEWAY_PID" "$c"
    done
    # One of three keys failing (DESIGN.md §7 / issue 3): the same load on the
    # "flaky" provider, at 16 connections.
    BENCH_MODEL=mock-gpt-flaky run_wrk flaky "$GATEWAY_URL" "$TOKEN" "$GATEWAY_PID" 16
    # Every limit on the token, at 16 connections, next to none.
    run_wrk limited "$GATEWAY_URL" "$LIMITED_TOKEN" "$GATEWAY_PID" 16
    # Streams at 16 connections: the mock directly, through the gateway
    # passed through (OpenAI upstream), and translated (Anthropic upstream).
    BENCH_STREAM=1 run_wrk stream-direct "$MOCK_URL" ok-bench-1 "$MOCK_PID" 16
    BENCH_STREAM=1 run_wrk stream-pass "$GATEWAY_URL" "$TOKEN" "$GATEWAY_PID" 16
    BENCH_STREAM=1 BENCH_MODEL=mock-claude run_wrk stream-xlat "$GATEWAY_URL" "$TOKEN" "$GATEWAY_PID" 16
    GATEWAY_HWM_KB="$(awk '/^VmHWM:/ { print $2 }' "/proc/$GATEWAY_PID/status")"
fi

# --- report -----------------------------------------------------------------------------------

field() { awk -v i="$2" '{ print $i }' <<<"${RESULT[$1]}"; }

log ""
log "$(printf '%-8s %5s %10s %9s %9s %10s %8s' target conns 'req/s' 'p50 ms' 'p99 ms' 'cpu us/req' errors)"
targets=(direct)
[[ -n "$GATEWAY_PID" ]] && targets+=(gateway)
for target in "${targets[@]}"; do
    for c in $CONCURRENCY; do
        key="$target:$c"
        log "$(printf '%-8s %5s %10s %9s %9s %10s %8s' "$target" "$c" "$(field "$key" 1)" \
            "$(field "$key" 2)" "$(field "$key" 3)" "${CPU_US[$key]}" \
            "$(($(field "$key" 5) + $(field "$key" 6)))")"
    done
done
log "(cpu us/req is the target process's user+system time per request: the mock for direct,"
log " the gateway for gateway; errors are non-2xx answers plus socket errors)"

if [[ -n "$GATEWAY_PID" ]]; then
    log ""
    log "overhead (gateway - direct):"
    for c in $CONCURRENCY; do
        log "$(awk -v c="$c" -v d="${RESULT[direct:$c]}" -v g="${RESULT[gateway:$c]}" 'BEGIN {
            split(d, D, " "); split(g, G, " ")
            ratio = D[1] > 0 ? G[1] / D[1] : 0
            printf "  c=%-4s p50 %+.3f ms   p99 %+.3f ms   throughput %.3fx direct", c, G[2] - D[2], G[3] - D[3], ratio
        }')"
    done
    log "$(awk -v d="${RESULT[gateway:16]:-0 0 0}" -v f="${RESULT[flaky:16]:-0 0 0}" 'BEGIN {
        split(d, D, " "); split(f, F, " ")
        printf "  one of three keys failing, c=16: %s req/s (%.3fx healthy), p50 %+.3f ms, p99 %+.3f ms vs healthy", F[1], (D[1] > 0 ? F[1] / D[1] : 0), F[2] - D[2], F[3] - D[3]
    }')"
    log "$(awk -v g="${RESULT[gateway:16]:-0 0 0}" -v l="${RESULT[limited:16]:-0 0 0}" 'BEGIN {
        split(g, G, " "); split(l, L, " ")
        printf "  every limit on the token, c=16: %s req/s (%.3fx no limits), p50 %+.3f ms, p99 %+.3f ms vs no limits", L[1], (G[1] > 0 ? L[1] / G[1] : 0), L[2] - G[2], L[3] - G[3]
    }')"
    log "  cpu per request with every limit: ${CPU_US[limited:16]:-n/a} us (no limits: ${CPU_US[gateway:16]:-n/a} us)"
    log ""
    log "streams, c=16 (OpenAI client; 5 content chunks + usage per answer):"
    for key in stream-direct stream-pass stream-xlat; do
        [[ -n "${RESULT[$key:16]:-}" ]] || continue
        log "$(printf '  %-14s %8s req/s  p50 %7s ms  p99 %7s ms  cpu %6s us/req' "$key" \
            "$(field "$key:16" 1)" "$(field "$key:16" 2)" "$(field "$key:16" 3)" "${CPU_US[$key:16]}")"
    done
    log "$(awk -v p="${RESULT[stream-pass:16]:-0 0 0}" -v x="${RESULT[stream-xlat:16]:-0 0 0}" 'BEGIN {
        split(p, P, " "); split(x, X, " ")
        printf "  translated vs passed through: p50 %+.3f ms, p99 %+.3f ms, throughput %.3fx", X[2] - P[2], X[3] - P[3], (P[1] > 0 ? X[1] / P[1] : 0)
    }')"
    log "$(awk -v kb="$GATEWAY_HWM_KB" 'BEGIN { printf "gateway peak RSS (VmHWM): %.1f MiB", kb / 1024 }')"
    log "gateway CPU per request: $(for c in $CONCURRENCY; do printf 'c=%s %s us  ' "$c" "${CPU_US[gateway:$c]}"; done)"

    log ""
    log "targets (DESIGN.md section 7):"
    verdict() { if awk "BEGIN { exit !($1) }"; then echo met; else echo MISSED; fi; }
    for c in $CONCURRENCY; do
        ratio="$(awk -v d="$(field "direct:$c" 1)" -v g="$(field "gateway:$c" 1)" 'BEGIN { printf "%.3f", (d > 0 ? g / d : 0) }')"
        log "  throughput >= 0.4x direct at c=$c: ${ratio}x, $(verdict "$ratio >= 0.4")"
    done
    if [[ -n "${RESULT[direct:16]:-}" && -n "${RESULT[gateway:16]:-}" ]]; then
        p50="$(awk -v d="$(field direct:16 2)" -v g="$(field gateway:16 2)" 'BEGIN { printf "%.3f", g - d }')"
        log "  p50 overhead <= 0.1 ms at c=16: $p50 ms, $(verdict "$p50 <= 0.1")"
    fi
    if [[ -n "${RESULT[direct:64]:-}" && -n "${RESULT[gateway:64]:-}" ]]; then
        p99="$(awk -v d="$(field direct:64 3)" -v g="$(field gateway:64 3)" 'BEGIN { printf "%.3f", g - d }')"
        log "  p99 overhead < 1 ms at c=64: $p99 ms, $(verdict "$p99 < 1")"
    fi
    rss="$(awk -v kb="$GATEWAY_HWM_KB" 'BEGIN { printf "%.1f", kb / 1024 }')"
    log "  peak RSS < 40 MiB: $rss MiB, $(verdict "$rss < 40")"
fi

log ""
log "raw output saved to bench/results/latest.txt"
