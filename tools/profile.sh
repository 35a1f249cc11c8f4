#!/bin/sh
# Where a stop-and-wait download's time goes, per chunk, for one case (chunk size and
# busy-poll setting) of one download from `udpft serve` to `udpft get` on loopback, in four
# light steps (docs/bench/profile.md explains the budget they add up to):
#   1. the ceiling: `udpft-bench ceiling` (a Data-sized ping-pong, blocking and spinning);
#   2. a plain download under `perf stat -e task-clock` (counting, not sampling: the run
#      keeps its speed): wall µs per chunk and each side's CPU µs per chunk;
#   3. the same with the `turnaround` build (src/net/turnaround.rs): each side's mean time
#      from a receive returning a datagram to its answer's send;
#   4. `perf record -e cpu-clock` at PROFILE_FREQ Hz (499 by default) without call graphs,
#      both sides: shares by binary and the top symbols.
# Usage (as root or with perf_event_paranoid <= 1, under the bench lock):
#   tools/profile.sh [CHUNK [BUSY_POLL_MICROS [PORT]]]      defaults: 1430 0 16970
# CHUNK `tftp` profiles `udpft serve --tftp` with curl (blksize 1468) as the client instead
# (steps 2 and 4 only). Needs `cargo build --release --bins`, the turnaround build
# (`CARGO_TARGET_DIR=target/turnaround cargo build --release --features turnaround --bin
# udpft`; TURNAROUND_BIN overrides its path) and perf (Debian: linux-perf). PROFILE_BYTES
# sets the file size (64 MiB). Stops only the servers it started, by their PIDs; the raw
# data stays in the printed folder.
set -eu
CHUNK=${1:-1430}
BP=${2:-0}
PORT=${3:-16970}
FREQ=${PROFILE_FREQ:-499}
BYTES=${PROFILE_BYTES:-67108864}
cd "$(dirname "$0")/.."
TA=${TURNAROUND_BIN:-target/turnaround/release/udpft}
D=$(mktemp -d /tmp/udpft-profile.XXXXXX)
mkdir "$D/lib"
head -c "$BYTES" /dev/urandom > "$D/lib/f.bin"
TFTP=""
[ "$CHUNK" = tftp ] && TFTP=--tftp
SP=""
trap '[ -n "$SP" ] && kill -TERM $SP 2>/dev/null || true' EXIT
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# Starts a server of binary $1 (log in $D/$2.server.log); its PID in SP.
serve() {
    "$1" serve $TFTP --root "$D/lib" --bind "127.0.0.1:$PORT" --busy-poll "$BP" 2> "$D/$2.server.log" &
    SP=$!
    sleep 0.5
}
# Stops the server started last and waits for it (it prints its turnaround on the way out).
unserve() {
    kill -TERM "$SP"; wait "$SP" || true; SP=""
}
client() {
    if [ -n "$TFTP" ]; then
        echo "curl -s --tftp-blksize 1468 -o $D/copy.bin tftp://127.0.0.1:$PORT/f.bin"
    else
        echo "$1 get f.bin --server 127.0.0.1:$PORT --no-resume --busy-poll $BP --chunk $CHUNK -v -o $D/copy.bin"
    fi
}
# CPU ms counted by a `perf stat -e task-clock` output file.
task_ms() {
    awk '/task-clock/ { gsub(",", "", $1); print $1 }' "$1"
}
SIZE=$CHUNK
[ -n "$TFTP" ] && SIZE=1468
CHUNKS=$(( (BYTES + SIZE - 1) / SIZE ))

if [ -z "$TFTP" ]; then
    echo "== 1. ceiling (chunk $CHUNK)"
    target/release/udpft-bench ceiling --chunk "$CHUNK" --seconds 1 --count 20000 2>&1 | grep -i -E 'rtt|ping|ceiling' || true
fi

echo "== 2. plain download under perf stat ($CHUNKS chunks)"
serve target/release/udpft plain
sh -c "$(client target/release/udpft)" 2> /dev/null; rm -f "$D/copy.bin"   # warm the page cache
perf stat -e task-clock,context-switches -p "$SP" -o "$D/server.stat" 2> /dev/null &
PS=$!
sleep 0.3
START=$(date +%s%N)
perf stat -e task-clock,context-switches -o "$D/client.stat" -- sh -c "$(client target/release/udpft)" 2> "$D/plain.client.log"
WALL_NS=$(( $(date +%s%N) - START ))
kill -INT "$PS"; wait "$PS" || true
cmp "$D/lib/f.bin" "$D/copy.bin" && echo "copy identical"; rm -f "$D/copy.bin"
unserve
grep goodput "$D/plain.client.log" || true
# The client's own elapsed time (its -v line) is the transfer; the wall time above adds
# process start-up and the linger after the result.
awk -v chunks="$CHUNKS" -v s="$(task_ms "$D/server.stat")" -v c="$(task_ms "$D/client.stat")" -v w="$WALL_NS" 'BEGIN {
    printf "wall %.1f µs/chunk (process start to exit); CPU per chunk: server %.2f µs, client %.2f µs (client with start-up)\n",
        w / 1000 / chunks, s * 1000 / chunks, c * 1000 / chunks }'
grep -h context-switches "$D/server.stat" "$D/client.stat" | sed 's/^/  context switches (server, client): /' || true

if [ -z "$TFTP" ] && [ -x "$TA" ]; then
    echo "== 3. turnaround build"
    serve "$TA" ta
    sh -c "$(client "$TA")" 2> "$D/ta.client.log"
    cmp "$D/lib/f.bin" "$D/copy.bin" && echo "copy identical"; rm -f "$D/copy.bin"
    unserve
    grep -h goodput "$D/ta.client.log" || true
    echo "server: $(grep -h turnaround "$D/ta.server.log" || echo none)"
    echo "client: $(grep -h turnaround "$D/ta.client.log" || echo none)"
fi

echo "== 4. perf record -F $FREQ, no call graphs"
serve target/release/udpft perf
perf record -F "$FREQ" -e cpu-clock -p "$SP" -o "$D/server.data" 2> /dev/null &
PP=$!
sleep 0.3
perf record -F "$FREQ" -e cpu-clock -o "$D/client.data" -- sh -c "$(client target/release/udpft)" 2> "$D/perf.client.log"
kill -INT "$PP"; wait "$PP" || true
unserve
grep -h goodput "$D/perf.client.log" || true
for side in server client; do
    echo "== $side (chunk $CHUNK, busy-poll $BP): by binary"
    perf report -i "$D/$side.data" --no-children --sort dso --stdio 2> /dev/null | grep -E '%|Samples' | head -7
    echo "== $side: top symbols"
    perf report -i "$D/$side.data" --no-children --sort dso,symbol --stdio 2> /dev/null | grep '%' | head -25
done
rm -f "$D/lib/f.bin" "$D/copy.bin"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "perf data in $D"
