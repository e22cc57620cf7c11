#!/bin/sh
# qemu-expected.sh - regenerate X.expected and X.status for every test guest,
# using QEMU as the reference implementation.
#
# Reference: QEMU 7.2 (qemu-system-i386, TCG, its bundled SeaBIOS), i.e. a PC
# model we did not write.  The committed files came from
# "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)".
#
#   X.expected  the exact bytes the guest wrote to I/O port 0xE9 (isa-debugcon).
#               SeaBIOS writes its own debug log to port 0x402, not 0xE9, so the
#               file holds only the guest's output.
#   X.status    QEMU's exit status, one line:
#                 1    the guest wrote 0 to the isa-debug-exit port 0xF4
#                      (QEMU exits with (value << 1) | 1)
#                 0    the guest triple-faulted (-no-reboot turns the reset into
#                      an exit)
#                 124  QEMU was still running when `timeout` stopped it: the
#                      guest halted for good (halt.asm; trapeze exits 0 there)
#
# Boot sectors (every X.asm except rom.asm) are booted by SeaBIOS from a raw IDE
# disk image: it loads the 512 bytes at 0000:7C00 and jumps there with DL=0x80,
# which is what `trapeze run --flat X.bin --load 0x7c00` does.  rom.bin is the
# whole firmware (-bios), like `trapeze run --bios rom.bin`.
#
# mb_kernel.bin is a multiboot kernel: QEMU loads it with -kernel (its multiboot
# v1 loader), with -m 16 to match the tests' --memory 16M, the command line and the
# modules mb_mod1.txt ("arg one") and mb_mod2.dat; trapeze runs it as
#   trapeze run --multiboot mb_kernel.bin --append "root=/dev/x quiet" \
#       --module "mb_mod1.txt,arg one" --module mb_mod2.dat --memory 16M
#
# X.input, where it exists, is the guest's serial input: QEMU reads it on COM1
# through -serial stdio, and the tests give it to trapeze as stdin.
#
# The paging_* and long_* guests need PAE with NX, long mode, 1-GByte pages and
# RDTSCP, prot_long needs long mode: they run on qemu-system-x86_64 with
# "-cpu qemu64,+pdpe1gb,+rdtscp" (same QEMU version, TCG).
#
#   ./qemu-expected.sh            regenerate every guest
#   ./qemu-expected.sh X Y ...    regenerate only guests X, Y ...
set -u
cd "$(dirname "$0")"

for q in qemu-system-i386 qemu-system-x86_64; do
    if ! command -v $q >/dev/null 2>&1; then
        echo "qemu-expected.sh: $q not found (apt-get install qemu-system-x86)" >&2
        exit 1
    fi
done
./build.sh || exit 1
qemu-system-i386 --version | head -n 1
qemu-system-x86_64 --version | head -n 1

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ $# -gt 0 ]; then
    bins=$(for g in "$@"; do echo "$g.bin"; done)
else
    bins=$(ls *.bin)
fi
for bin in $bins; do
    g="${bin%.bin}"
    out="$tmp/$g.out"
    : > "$out"
    if [ "$g" = mb_kernel ]; then
        timeout 60 qemu-system-i386 -m 16 -accel tcg -nographic -no-reboot \
            -display none -monitor none -serial none \
            -device isa-debugcon,iobase=0xe9,chardev=dbg -chardev file,id=dbg,path="$out" \
            -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
            -kernel "$bin" -append "root=/dev/x quiet" \
            -initrd "mb_mod1.txt arg one,mb_mod2.dat" 2>"$tmp/$g.err"
        status=$?
        cp "$out" "$g.expected"
        echo "$status" > "$g.status"
        printf '%-8s status %-3s %s bytes\n' "$g" "$status" "$(wc -c < "$g.expected")"
        continue
    fi
    case "$g" in
        rom) boot="-bios $bin" ;;
        *)   boot="-drive format=raw,file=$bin,if=ide" ;;
    esac
    case "$g" in
        paging_*|long_*|prot_long) qemu="qemu-system-x86_64 -cpu qemu64,+pdpe1gb,+rdtscp" ;;
        *)               qemu="qemu-system-i386" ;;
    esac
    case "$g" in
        halt) limit=5 ;;        # never exits by itself
        *)    limit=60 ;;
    esac
    # rtc reads the date and the CMOS memory sizes: the same start date as
    # trapeze's fixed one and the tests' 16 MiB.
    case "$g" in
        rtc) extra="-m 16 -rtc base=2024-01-01T00:00:00" ;;
        *)   extra="" ;;
    esac
    # serial_echo reads serial_echo.input on COM1; -nographic is left out there
    # because SeaBIOS would then take COM1 input as its own console's keyboard.
    if [ -f "$g.input" ]; then
        serial="-serial stdio"
        input="$g.input"
    else
        serial="-nographic -serial none"
        input=/dev/null
    fi
    out="$tmp/$g.out"
    : > "$out"
    timeout "$limit" $qemu -accel tcg -no-reboot $extra \
        -display none -monitor none $serial \
        -device isa-debugcon,iobase=0xe9,chardev=dbg -chardev file,id=dbg,path="$out" \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
        $boot <"$input" >/dev/null 2>"$tmp/$g.err"
    status=$?
    cp "$out" "$g.expected"
    echo "$status" > "$g.status"
    printf '%-8s status %-3s %s bytes\n' "$g" "$status" "$(wc -c < "$g.expected")"
done
