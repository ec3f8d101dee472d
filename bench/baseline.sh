#!/usr/bin/env bash
# Builds the gateway of issue 11's baseline commit (ee7fbd2: main after issues 9 and 10, before
# the speed work) into target/bench-baseline/, and prints the binary's path. `make bench` passes
# it to bench/run.sh as BENCH_BASELINE_BIN, which measures it beside today's gateway in the same
# run, so the target "CPU per request at most half of the baseline's" compares two figures of one
# machine. The first build takes about as long as a release build of today's tree (5-10 min on
# the 2-core machine); later runs reuse the binary.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMMIT=ee7fbd2728a667c33d9684ee6e70fc2a36b03c55
DIR="$ROOT/target/bench-baseline"
BIN="$DIR/target/release/switchyard"

if [[ ! -x "$BIN" ]]; then
    git -C "$ROOT" cat-file -e "$COMMIT^{commit}" 2>/dev/null || {
        echo "bench: the baseline commit $COMMIT is not in this clone (a shallow clone: git fetch --unshallow)" >&2
        exit 1
    }
    echo "bench: building the baseline gateway ($COMMIT) in $DIR" >&2
    rm -rf "$DIR/src"
    mkdir -p "$DIR/src"
    # The commit's files alone (no worktree metadata left in .git), built with its own lock file.
    git -C "$ROOT" archive "$COMMIT" | tar -x -C "$DIR/src"
    (cd "$DIR/src" && CARGO_TARGET_DIR="$DIR/target" cargo build --release --locked --bin switchyard) >&2
fi
echo "$BIN"
