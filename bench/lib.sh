# Helpers shared by the benchmark scripts (bench/run.sh, bench/ab.sh), sourced by both. When
# called, they use what the script has set by then:
#   ROOT          the repository's root
#   WORK          a private working directory, removed by the script at exit
#   PIDS          an array; every process started here is added, for the script to stop at exit
#   MASTER_KEY    the gateways' admin master key
#   STREAM_CHUNKS content chunks per streamed answer (the mock's `chunks<N>-` keys)
#   GATEWAY_BIN   the gateway binary (start_gateway)
#   log, die      print a line (die: and exit 1)
# shellcheck shell=bash

# stop_started: stops every process in PIDS and waits for each to exit.
stop_started() {
    local pid
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        wait "$pid" 2>/dev/null || true
    done
}

# apt_install PACKAGE...: the first package that installs, with `apt-get update` on failure.
apt_install() {
    local package
    for package in "$@"; do
        apt-get install -y "$package" >>"$WORK/apt.log" 2>&1 && return 0
    done
    apt-get update >>"$WORK/apt.log" 2>&1 || true
    for package in "$@"; do
        apt-get install -y "$package" >>"$WORK/apt.log" 2>&1 && return 0
    done
    cat "$WORK/apt.log" >&2
    return 1
}

# A free port below the kernel's ephemeral range: a port the kernel handed out (bind to 0) can be
# taken again by any outgoing connection (wrk's, the gateway's to the mock) before the server
# binds it. Same rule as the tests' free_port (tests/common/process.rs).
free_port() {
    python3 - <<'PY'
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(200):
    port = random.randrange(10000, max(low, 10001))
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(port)
        break
else:
    raise SystemExit("no free port below the ephemeral range")
PY
}

# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat, counted after
# the parenthesised command name, which may contain spaces).
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# The same, summed over a process and its children (nginx: the master and its workers).
cpu_ticks_tree() {
    local total pid
    total="$(cpu_ticks "$1")"
    for pid in $(ps -o pid= --ppid "$1"); do
        total=$((total + $(cpu_ticks "$pid" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
CLK_TCK="$(getconf CLK_TCK)"

declare -A PROC_LOG=()
# Each started gateway's URL, by pid (start_gateway): the measured processes that write usage.
declare -A GATEWAY_URL=()

# Dies (with the process's last log lines) if a measured process has exited.
require_alive() {
    if ! kill -0 "$1" 2>/dev/null; then
        [[ -n "${PROC_LOG[$1]:-}" ]] && tail -n 40 "${PROC_LOG[$1]}" >&2
        die "the $2 process ($1) has exited"
    fi
}

# usage_drained URL RUN: waits until the gateway at URL holds no usage record its writer has not
# committed (`switchyard_usage_buffered_records` 0 on /metrics); dies after 60 s, and logs a
# warning naming RUN when it took over 1 s (a batch or two is in flight at any moment; more is a
# writer falling behind). Read a run's CPU after it: the run then pays for its own database
# writes, none spill into the next run, and a writer that falls behind (a backlog growing through
# the run: work deferred, not saved) shows as a wait instead of as throughput.
usage_drained() {
    local waited
    waited="$(usage_wait_seconds "$1")" || die "$2: the usage writer did not catch up"
    if awk -v s="$waited" 'BEGIN { exit !(s > 1) }'; then
        log "bench: WARNING: $2: the usage writer took $waited s after the run to catch up"
    fi
}

# usage_wait_seconds URL: usage_drained's wait; prints the seconds it took.
usage_wait_seconds() {
    python3 - "$1/metrics" "$MASTER_KEY" <<'PY'
import sys, time, urllib.request
url, key = sys.argv[1], sys.argv[2]
started = time.monotonic()
while True:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        lines = answer.read().decode().splitlines()
    held = [float(line.split()[1]) for line in lines
            if line.startswith("switchyard_usage_buffered_records ")]
    if not held:
        raise SystemExit(f"{url} has no switchyard_usage_buffered_records")
    waited = time.monotonic() - started
    if held[0] == 0:
        print(f"{waited:.2f}")
        break
    if waited > 60:
        raise SystemExit(f"{url}: {held[0]:.0f} usage records still held after 60 s")
    time.sleep(0.05)
PY
}

# chat_load URL AUTH CONNS DURATION OUT: wrk drives chat.lua at URL (BENCH_STREAM and BENCH_MODEL
# from the environment) with latency percentiles, its output in OUT; returns wrk's status.
chat_load() {
    BENCH_AUTH="$2" wrk -t"$WRK_THREADS" -c"$3" -d"$4" --latency -s "$ROOT/bench/chat.lua" "$1" \
        >"$5" 2>&1
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

# check_chat URL AUTH MODEL STREAM: fails unless one chat completion answers 200 (and, for a
# stream, carries all its content chunks and its end marker).
check_chat() {
    local url="$1" auth="$2" model="$3" stream="$4" status extra=""
    [[ "$stream" == 1 ]] && extra=',"stream":true'
    status="$(curl -s -m 10 -o "$WORK/check.out" -w '%{http_code}' -X POST "$url/v1/chat/completions" \
        -H "Authorization: Bearer $auth" -H 'content-type: application/json' \
        -d "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]$extra}" || true)"
    if [[ "$status" != 200 ]]; then
        log "bench: a check request to $url ($model) answered ${status:-nothing}:"
        tee -a "$OUT" <"$WORK/check.out" || true
        exit 1
    fi
    if [[ "$stream" == 1 ]]; then
        local chunks
        chunks="$(grep -c '"content":"[^"]' "$WORK/check.out" || true)"
        if [[ "$chunks" != "$STREAM_CHUNKS" ]] || ! grep -q '^data: \[DONE\]' "$WORK/check.out"; then
            log "bench: a check stream from $url ($model) had $chunks content chunks, not $STREAM_CHUNKS, or no [DONE]:"
            tee -a "$OUT" <"$WORK/check.out" || true
            exit 1
        fi
    fi
}

# wait_for_http URL PID NAME: until URL answers 2xx (30 s at most).
wait_for_http() {
    local url="$1" pid="$2" name="$3"
    for _ in $(seq 1 300); do
        curl -sf -m 1 -o /dev/null "$url" && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "${PROC_LOG[$pid]}" >&2
            die "$name exited during startup"
        fi
        sleep 0.1
    done
    tail -n 40 "${PROC_LOG[$pid]}" >&2
    die "$name was not ready within 30 s"
}

# start_mock MOCK_BIN: starts the mock upstream on a free port; sets MOCK_PID, MOCK_ADDR, MOCK_URL.
start_mock() {
    local mock_bin="$1"
    "$mock_bin" --listen 127.0.0.1:0 >"$WORK/mock.out" 2>&1 &
    MOCK_PID=$!
    PIDS+=("$MOCK_PID")
    PROC_LOG[$MOCK_PID]="$WORK/mock.out"
    MOCK_ADDR=""
    for _ in $(seq 1 100); do
        MOCK_ADDR="$(sed -n 's/^listening on //p' "$WORK/mock.out")"
        [[ -n "$MOCK_ADDR" ]] && break
        kill -0 "$MOCK_PID" 2>/dev/null || { cat "$WORK/mock.out" >&2; die "the mock exited"; }
        sleep 0.1
    done
    [[ -n "$MOCK_ADDR" ]] || die "the mock did not start"
    MOCK_URL="http://$MOCK_ADDR"
}

# write_gateway_template MOCK_URL: the bench's gateway settings, with @PORT@ for start_gateway
# to fill, in $WORK/bench.toml.in.
write_gateway_template() {
    local mock_url="$1"
    cat >"$WORK/bench.toml.in" <<EOF
[server]
listen = "127.0.0.1:@PORT@"
# One worker per core, as nginx.
workers = 0
# Room for the 10,000 held streams (the default, 1024, would refuse them with 503).
max_concurrent_requests = 20000

[upstream]
# Held streams stay silent after their first chunk while the others open.
stream_idle_timeout = "300s"

[admin]
master_key = "$MASTER_KEY"

[logging]
level = "warning"

[[providers]]
name = "mock"
kind = "openai-compatible"
base_url = "$mock_url/v1"
keys = ["chunks$STREAM_CHUNKS-bench-1", "chunks$STREAM_CHUNKS-bench-2"]
models = ["mock-gpt"]

# The same mock behind three keys, one of which always answers 500: its
# circuit opens after 3 failures and it is then only probed.
[[providers]]
name = "flaky"
kind = "openai-compatible"
base_url = "$mock_url/v1"
keys = ["ok-flaky-1", "ok-flaky-2", "e500-flaky-3"]
models = ["mock-gpt-flaky"]

# Anthropic's wire format on the same mock: OpenAI clients' requests and
# streams are translated both ways.
[[providers]]
name = "claude"
kind = "anthropic"
base_url = "$mock_url/v1"
keys = ["chunks$STREAM_CHUNKS-claude-1", "chunks$STREAM_CHUNKS-claude-2"]
models = ["mock-claude"]

# Streams that send their first content chunk, then stay open until the
# gateway closes them (the open-streams measurement).
[[providers]]
name = "hold"
kind = "openai-compatible"
base_url = "$mock_url/v1"
keys = ["streamhang-hold-1", "streamhang-hold-2"]
models = ["mock-hold"]

[[prices]]
model = "mock-gpt"
input_per_mtok = 2.5
output_per_mtok = 10.0

[[prices]]
model = "mock-claude"
input_per_mtok = 3.0
output_per_mtok = 15.0
EOF
}

# start_gateway NAME DATABASE_URL: starts a gateway with the bench settings; sets GW_PID, GW_URL.
start_gateway() {
    local name="$1" database_url="$2" port
    port="$(free_port)"
    sed "s/@PORT@/$port/" "$WORK/bench.toml.in" >"$WORK/$name.toml"
    # A usage journal each: one running gateway per journal directory.
    SWITCHYARD__DATABASE__URL="$database_url" SWITCHYARD__USAGE__JOURNAL_DIR="$WORK/$name-journal" \
        "$GATEWAY_BIN" serve --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 &
    GW_PID=$!
    PIDS+=("$GW_PID")
    PROC_LOG[$GW_PID]="$WORK/$name.log"
    GW_URL="http://127.0.0.1:$port"
    GATEWAY_URL[$GW_PID]="$GW_URL"
    wait_for_http "$GW_URL/healthz" "$GW_PID" "the $name gateway"
    log "$name gateway on 127.0.0.1:$port (pid $GW_PID)"
}

# create_token URL JSON: prints the new token's secret.
create_token() {
    local json
    json="$(curl -s -m 10 -X POST "$1/admin/tokens" -H "Authorization: Bearer $MASTER_KEY" \
        -H 'content-type: application/json' -d "$2")"
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])' <<<"$json" 2>/dev/null ||
        die "could not create a token at $1: $json"
}

# A token with every limit on (issue 5): money and token budgets held in the database, RPM, TPM,
# parallelism and a daily quota in memory, all far above what the run spends so nothing is
# refused.
LIMITED_TOKEN_JSON='{"name":"bench-limited","budget_usd":1000000,"budget_tokens":100000000000,
    "rpm":100000000,"tpm":1000000000,"max_parallel":10000,
    "quotas":[{"period":"day","kind":"requests","limit":100000000}]}'
