#!/usr/bin/env bash
# Per-file wall time of the udpft client as a script sees it (issue 8's figures): 100
# sequential 1 KiB gets (one process each), 100 `ls`, process start alone, one `get` of the
# 100 files, and the time `ls` takes to fail against a closed port (ICMP port unreachable).
# Loopback only; the server is started here and stopped by its PID.
#
#   tools/cli-timing.sh [UDPFT_BINARY [OLD_BINARY]]
#
# With OLD_BINARY, both are timed in alternating rounds against the same server.
set -euo pipefail
NEW=${1:-target/release/udpft}
OLD=${2:-}
NEW=$(realpath "$NEW"); [ -n "$OLD" ] && OLD=$(realpath "$OLD")
dir=$(mktemp -d); trap 'kill "$server" 2>/dev/null; rm -rf "$dir"' EXIT
mkdir "$dir/lib"
for i in $(seq 1 100); do head -c 1024 /dev/urandom >"$dir/lib/f$i.bin"; done
port=$((20000 + RANDOM % 20000))
"$NEW" serve --root "$dir/lib" --bind 127.0.0.1:$port 2>/dev/null & server=$!
until "$NEW" ls --server 127.0.0.1:$port >/dev/null 2>&1; do :; done
ms() { echo "scale=2; ($2-$1)*1000/$3" | bc -l; }
bins=("$NEW"); [ -n "$OLD" ] && bins=("$OLD" "$NEW")
for round in 1 2 3; do
  for b in "${bins[@]}"; do
    rm -rf "$dir/out"; mkdir "$dir/out"
    s=$(date +%s.%N)
    for i in $(seq 1 100); do "$b" get f$i.bin -o "$dir/out/f$i.bin" --server 127.0.0.1:$port; done
    e=$(date +%s.%N)
    echo "round $round $b: 100 sequential gets: $(ms "$s" "$e" 100) ms per file"
  done
done
for b in "${bins[@]}"; do
  s=$(date +%s.%N); for i in $(seq 1 100); do "$b" ls --server 127.0.0.1:$port >/dev/null; done; e=$(date +%s.%N)
  echo "$b: ls: $(ms "$s" "$e" 100) ms per call"
  s=$(date +%s.%N); for i in $(seq 1 100); do "$b" --version >/dev/null; done; e=$(date +%s.%N)
  echo "$b: --version (process start alone): $(ms "$s" "$e" 100) ms per call"
done
rm -rf "$dir/out"; mkdir "$dir/out"
names=$(for i in $(seq 1 100); do printf 'f%d.bin ' "$i"; done)
s=$(date +%s.%N); "$NEW" get $names -o "$dir/out/" -q --server 127.0.0.1:$port; e=$(date +%s.%N)
echo "$NEW: one get of 100 files: $(ms "$s" "$e" 100) ms per file ($(ls "$dir/out" | wc -l) files)"
kill "$server"; wait "$server" 2>/dev/null || true
for b in "${bins[@]}"; do
  s=$(date +%s%N); "$b" ls --server 127.0.0.1:$port 2>&1 || c=$?; e=$(date +%s%N)
  echo "$b: ls against a closed port: exit ${c:-0} after $(( (e-s)/1000000 )) ms"
done
