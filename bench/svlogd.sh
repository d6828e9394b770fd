#!/usr/bin/env bash
# Throughput and peak memory of `approuter svlogd -tt` and the lean `approuter-svlogd -tt` (what
# log/run execs) next to runit's `svlogd -tt`, fed through a
# pipe as runsv feeds them. Not a test: run it by hand on a quiet machine and record the table in
# docs/benchmarks.md. Knobs: RUNS (default 3), SHORT (lines, 1000000), LONG (lines, 20000),
# LONG_SIZE (bytes per long line, 8192).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
short=${SHORT:-1000000}
long=${LONG:-20000}
long_size=${LONG_SIZE:-8192}

command -v svlogd >/dev/null || { echo "bench/svlogd.sh: runit's svlogd is missing; run .ci/install-packages" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench/svlogd.sh: /usr/bin/time is missing; install it: apt-get install time" >&2; exit 1; }
cargo build --release --quiet 2>/dev/null || cargo build --release
exe=${CARGO_TARGET_DIR:-target}/release/approuter

work=$(mktemp -d "${TMPDIR:-/tmp}/approuter-bench-svlogd.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The inputs, generated once: access-log-like short lines, and a burst of long ones.
awk -v n="$short" 'BEGIN { for (i = 0; i < n; i++)
    printf "GET /app/item/%07d 200 1532 0.0042 Mozilla/5.0 (X11; Linux x86_64)\n", i }' > "$work/short"
awk -v n="$long" -v size="$long_size" 'BEGIN {
    pad = sprintf("%*s", size - 14, ""); gsub(/ /, "x", pad)
    for (i = 0; i < n; i++) printf "long %07d %s\n", i, pad }' > "$work/long"

# run INPUT LINES COMMAND...: prints "<median lines/s> <max peak RSS KiB>" over $runs runs, each
# into a fresh log directory with svlogd's defaults (s1000000, n10).
run() {
    local input=$1 lines=$2; shift 2
    local rates=() rss=0 r start end kib last
    last=$(tail -n 1 "$input")
    for r in $(seq "$runs"); do
        rm -rf "$work/log"; mkdir "$work/log"
        start=$(date +%s.%N)
        cat "$input" | /usr/bin/time -f %M -o "$work/rss" "$@" "$work/log"
        end=$(date +%s.%N)
        # Sanity: the last line arrived whole.
        tail -n 1 "$work/log/current" | grep -qF -- "$last" || { echo "bench/svlogd.sh: $* lost the last line" >&2; exit 1; }
        rates+=("$(awk -v n="$lines" -v a="$start" -v b="$end" 'BEGIN { print n / (b - a) }')")
        kib=$(tail -n 1 "$work/rss")
        [ "$kib" -gt "$rss" ] && rss=$kib
    done
    printf '%s\n' "${rates[@]}" | sort -g | awk -v rss="$rss" '{ a[NR] = $1 } END { printf "%.0f %d\n", a[int((NR + 1) / 2)], rss }'
}

row() { # LABEL INPUT-DESCRIPTION RESULT
    read -r rate rss <<<"$3"
    printf '| %-30s | %-26s | %10s | %14s |\n' "$1" "$2" "$rate" "$rss"
}

short_desc="$short lines of $(head -n 1 "$work/short" | wc -c) B"
long_desc="$long lines of $long_size B"
printf '| %-30s | %-26s | %10s | %14s |\n' "logger" "input" "lines/s" "peak RSS (KiB)"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..32})" "$(printf -- '-%.0s' {1..28})" "$(printf -- '-%.0s' {1..11}):" "$(printf -- '-%.0s' {1..15}):"
row "runit svlogd -tt" "$short_desc" "$(run "$work/short" "$short" svlogd -tt)"
row "approuter svlogd -tt" "$short_desc" "$(run "$work/short" "$short" "$exe" svlogd -tt)"
row "approuter-svlogd -tt" "$short_desc" "$(run "$work/short" "$short" "$exe-svlogd" -tt)"
row "runit svlogd -tt -l 10000" "$long_desc" "$(run "$work/long" "$long" svlogd -tt -l 10000 -b 16384)"
row "approuter svlogd -tt -l 10000" "$long_desc" "$(run "$work/long" "$long" "$exe" svlogd -tt -l 10000 -b 16384)"
row "approuter-svlogd -tt -l 10000" "$long_desc" "$(run "$work/long" "$long" "$exe-svlogd" -tt -l 10000 -b 16384)"
