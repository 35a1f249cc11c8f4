#!/bin/bash
# tools/ab.sh: two builds of udpft side by side on the same download, in alternating rounds.
#
# Each round runs build A, then build B (each: its own server, its own client, the same
# lossy-proxy in front when a delay is asked), downloads the same file, checks the copy
# byte for byte, and prints both goodputs in MB/s (10^6 bytes). Alternating rounds is what
# makes two builds comparable on a shared, noisy machine: drift hits both alike.
#
#   tools/ab.sh A_UDPFT B_UDPFT ROUNDS CHUNK WINDOW DELAY SIZE_MIB
#
#   A_UDPFT, B_UDPFT  the two `udpft` binaries (e.g. a copy of an older build, and
#                     target/release/udpft)
#   DELAY             milliseconds added each way by lossy-proxy, or `none` (straight)
#
# Example (what the README's every-second-chunk figures came from):
#   git worktree add /tmp/old 6041289 && (cd /tmp/old && cargo build --release --bins)
#   tools/ab.sh /tmp/old/target/release/udpft target/release/udpft 8 65485 64 1 512
#
# Loopback only; ports AB_PORT..AB_PORT+3 (default 7111); every process it starts is
# stopped by its PID before the next round.
set -eu
if [ $# -ne 7 ]; then
    sed -n '2,20p' "$0" >&2
    exit 2
fi
A=$1 B=$2 ROUNDS=$3 CHUNK=$4 WINDOW=$5 DELAY=$6 SIZE=$7
PROXY=$(dirname "$(readlink -f "$0")")/../target/release/lossy-proxy
PORT=${AB_PORT:-7111}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/lib"
head -c "$((SIZE << 20))" /dev/urandom > "$WORK/lib/file.bin"

# One download with binary $1 on server port $2; prints its goodput in MB/s.
run() {
    local bin=$1 port=$2 server proxy="" via=$2
    "$bin" serve --root "$WORK/lib" --bind "127.0.0.1:$port" --max-window 256 \
        > "$WORK/server.log" 2>&1 &
    server=$!
    if [ "$DELAY" != none ]; then
        via=$((port + 1))
        "$PROXY" --listen "127.0.0.1:$via" --upstream "127.0.0.1:$port" --delay "$DELAY" \
            --duration 600 > "$WORK/proxy.log" 2>&1 &
        proxy=$!
    fi
    for _ in $(seq 100); do
        "$bin" list --server "127.0.0.1:$port" > /dev/null 2>&1 && break
    done
    local out
    out=$("$bin" get -v --server "127.0.0.1:$via" --chunk "$CHUNK" --window "$WINDOW" \
        -o "$WORK/copy.bin" file.bin 2>&1 || true)
    cmp -s "$WORK/copy.bin" "$WORK/lib/file.bin" || echo "copy differs: $out" >&2
    rm -f "$WORK/copy.bin"
    kill "$server" $proxy 2> /dev/null || true
    wait "$server" $proxy 2> /dev/null || true
    # "512.00 MiB in 380 ms": bytes ÷ the client's elapsed time.
    echo "$out" | awk -v size="$((SIZE << 20))" '
        match($0, / in [0-9.]+ (ms|s),/) {
            t = substr($0, RSTART + 4, RLENGTH - 5); split(t, p, " ")
            secs = (p[2] == "ms") ? p[1] / 1000 : p[1]
            printf "%.0f", size / secs / 1e6; exit
        }'
}

echo "round A_MB/s B_MB/s (chunk $CHUNK, window $WINDOW, delay $DELAY, $SIZE MiB)"
for r in $(seq "$ROUNDS"); do
    echo "$r $(run "$A" "$PORT") $(run "$B" "$((PORT + 2))")"
done
