#!/bin/sh
# build.sh - assemble every test guest: X.asm -> X.bin (nasm -f bin).
#
#   ./build.sh          (re)build all .bin files next to their .asm
#   ./build.sh --check  build into a temporary directory and fail if any
#                       committed .bin differs from what nasm produces now
#
# Idempotent: nasm output is deterministic, so running it twice changes nothing.
# The committed .bin files were produced with NASM 2.16.01.
set -eu
cd "$(dirname "$0")"

if ! command -v nasm >/dev/null 2>&1; then
    echo "build.sh: nasm not found: install it (e.g. apt-get install nasm) to assemble the test guests" >&2
    exit 1
fi

check=0
[ "${1:-}" = "--check" ] && check=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

status=0
for src in *.asm; do
    bin="${src%.asm}.bin"
    nasm -f bin -o "$tmp/$bin" "$src"
    if [ "$check" = 1 ]; then
        if ! cmp -s "$tmp/$bin" "$bin"; then
            echo "build.sh: $bin is stale (differs from nasm $src)" >&2
            status=1
        fi
    elif ! cmp -s "$tmp/$bin" "$bin" 2>/dev/null; then
        cp "$tmp/$bin" "$bin"
        echo "built $bin"
    fi
done
exit $status
