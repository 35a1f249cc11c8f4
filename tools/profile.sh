#!/bin/sh
# Where a stop-and-wait download's time goes: a `perf` profile (cpu-clock, so it works in a
# VM without hardware counters) of `udpft serve` and of `udpft get` over one 64 MiB download
# on loopback. Usage (as root or with perf_event_paranoid <= 1, under the bench lock):
#   tools/profile.sh [CHUNK [BUSY_POLL_MICROS [PORT]]]      defaults: 1430 0 16970
# CHUNK `tftp` profiles `udpft serve --tftp` with curl (blksize 1468) as the client instead.
# Needs `cargo build --release --bins` and perf (Debian: linux-perf). Prints the shares by
# binary (kernel, udpft, libc) and the top symbols of each side; the raw data stays in the
# printed folder (PROFILE_BYTES sets the file size). Stops only the server it started, by its PID.
set -eu
CHUNK=${1:-1430}
BP=${2:-0}
PORT=${3:-16970}
cd "$(dirname "$0")/.."
D=$(mktemp -d /tmp/udpft-profile.XXXXXX)
mkdir "$D/lib"
head -c ${PROFILE_BYTES:-67108864} /dev/urandom > "$D/lib/f.bin"
TFTP=""
[ "$CHUNK" = tftp ] && TFTP=--tftp
target/release/udpft serve $TFTP --root "$D/lib" --bind "127.0.0.1:$PORT" --busy-poll "$BP" 2> "$D/server.log" &
SP=$!
trap 'kill -TERM $SP 2>/dev/null || true' EXIT
sleep 0.5
if [ -n "$TFTP" ]; then
    CLIENT="curl -s --tftp-blksize 1468 -o $D/copy.bin tftp://127.0.0.1:$PORT/f.bin"
else
    CLIENT="target/release/udpft get f.bin --server 127.0.0.1:$PORT --no-resume --busy-poll $BP --chunk $CHUNK -v -o $D/copy.bin"
fi
sh -c "$CLIENT" 2> /dev/null; rm -f "$D/copy.bin"
perf record -F 4999 -g -e cpu-clock -p "$SP" -o "$D/server.data" 2> /dev/null &
PP=$!
sleep 0.3
START=$(date +%s%N)
perf record -F 4999 -g -e cpu-clock -o "$D/client.data" -- sh -c "$CLIENT" 2> "$D/client.log"
echo "client run: $(( ($(date +%s%N) - START) / 1000000 )) ms (with perf)"
kill -INT "$PP"; wait "$PP" || true
cmp "$D/lib/f.bin" "$D/copy.bin" && echo "copy identical"
grep goodput "$D/client.log" || true
for side in server client; do
    echo "== $side (chunk $CHUNK, busy-poll $BP): by binary"
    perf report -i "$D/$side.data" --no-children -g none --sort dso --stdio 2> /dev/null | grep '%' | head -6
    echo "== $side: top symbols"
    perf report -i "$D/$side.data" --no-children -g none --sort dso,symbol --stdio 2> /dev/null | grep '%' | head -20
done
rm -f "$D/lib/f.bin" "$D/copy.bin"
echo "perf data in $D"
