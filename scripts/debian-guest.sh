#!/usr/bin/env bash
# Build the Debian Linux guest for trapeze (issue 5): Debian 12's stock kernel and an
# initramfs around Debian's busybox-static.
#
#   scripts/debian-guest.sh [-c COMMANDS] [-o INITRD]
#
# Downloads linux-image-<version>-amd64 (what the linux-image-amd64 metapackage points
# at) and busybox-static with `apt-get download`, extracts vmlinuz and busybox with
# dpkg-deb, and packs an initramfs (newc cpio, gzip) whose /init mounts proc, sysfs and
# devtmpfs, installs the busybox applets, and then
#   - with -c COMMANDS: runs each line of that file with sh, echoing it first, then
#     powers the machine off (`poweroff -f`);
#   - without: starts an interactive shell on the console (setsid cttyhack sh, so job
#     control and Ctrl-C work).
# Everything is cached under target/debian-guest/ (ignored by git). The last two lines
# printed are `kernel PATH` and `initrd PATH`.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache="$repo/target/debian-guest"
commands=""
initrd=""

die() { echo "debian-guest: error: $*" >&2; exit 1; }
say() { echo "debian-guest: $*" >&2; }

while getopts "c:o:h" opt; do
    case $opt in
        c) commands=$OPTARG ;;
        o) initrd=$OPTARG ;;
        h) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "usage: $0 [-c COMMANDS] [-o INITRD]" ;;
    esac
done
[ -z "$commands" ] || [ -r "$commands" ] || die "cannot read the command list '$commands'"
for tool in apt-get apt-cache dpkg-deb cpio gzip flock; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "'$tool' is not installed (Debian packages: apt, dpkg, cpio, gzip, util-linux)"
done
mkdir -p "$cache/debs"
# One build at a time per cache: two runs (parallel tests) must not download and unpack
# the same packages into it at once.
exec 9>"$cache/.lock"
flock 9

# The metapackage's dependency names the real kernel package (linux-image-6.1.0-N-amd64).
kernel_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1
}
pkg=$(kernel_pkg)
if [ -z "$pkg" ]; then
    say "apt-get update (no package lists for linux-image-amd64)"
    apt-get update -qq >&2 || die "apt-get update failed: cannot reach the Debian archive"
    pkg=$(kernel_pkg)
fi
[ -n "$pkg" ] || die "linux-image-amd64 does not resolve to a kernel package (apt-cache depends linux-image-amd64)"
release=${pkg#linux-image-}

fetch() { # PACKAGE -> prints the .deb's path
    local name=$1 deb
    deb=$(ls "$cache/debs/${name}_"*.deb 2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
        say "apt-get download $name"
        (cd "$cache/debs" && apt-get download -q "$name" >&2) ||
            die "cannot download the Debian package '$name' (apt-get download $name failed)"
        deb=$(ls "$cache/debs/${name}_"*.deb 2>/dev/null | head -n1 || true)
        [ -n "$deb" ] || die "apt-get download $name left no .deb in $cache/debs"
    else
        say "cached $(basename "$deb")"
    fi
    echo "$deb"
}
kdeb=$(fetch "$pkg")
bdeb=$(fetch busybox-static)

kernel="$cache/vmlinuz-$release"
if [ ! -s "$kernel" ]; then
    say "extract /boot/vmlinuz-$release from $(basename "$kdeb")"
    dpkg-deb --fsys-tarfile "$kdeb" | tar -xO "./boot/vmlinuz-$release" >"$kernel.tmp" ||
        die "$(basename "$kdeb") has no ./boot/vmlinuz-$release"
    mv "$kernel.tmp" "$kernel"
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
say "extract /bin/busybox from $(basename "$bdeb")"
dpkg-deb --fsys-tarfile "$bdeb" | tar -xO ./bin/busybox >"$root/busybox" ||
    die "$(basename "$bdeb") has no ./bin/busybox"
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" \
    "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/root" "$root/etc"
mv "$root/busybox" "$root/bin/busybox"
chmod 755 "$root/bin/busybox"
ln -s busybox "$root/bin/sh"

cat >"$root/init" <<'EOF'
#!/bin/sh
# trapeze guest init: mount the kernel's filesystems, install busybox, then run the
# command list (and power off) or give the console a shell.
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
echo "trapeze-init: up"
if [ -f /commands ]; then
    while IFS= read -r line; do
        echo "trapeze-init\$ $line"
        sh -c "$line"
    done </commands
    echo "trapeze-init: done"
    poweroff -f
fi
exec setsid cttyhack sh -l
EOF
chmod 755 "$root/init"
if [ -n "$commands" ]; then
    cp "$commands" "$root/commands"
    say "command list: $commands"
fi

[ -n "$initrd" ] || initrd="$cache/initrd${commands:+-$(basename "$commands")}.img"
say "pack $initrd (newc cpio, gzip)"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet --reproducible |
    gzip -9 -n) >"$initrd.tmp"
mv "$initrd.tmp" "$initrd"
echo "kernel $kernel"
echo "initrd $initrd"
