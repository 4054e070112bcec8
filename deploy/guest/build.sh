#!/usr/bin/env bash
# Build the tiny Stratus guest from Debian packages, or reuse the one built already.
#
#   deploy/guest/build.sh [--force]
#
# Prints the directory holding the result (its last line of output), which is
#   ${STRATUS_GUEST_CACHE:-~/.cache/stratus/guest}/<version>/
#     disk.qcow2     the bootable root disk: the image to import (stratus image import-guest)
#     vmlinuz        the kernel, and
#     initrd.img     the initramfs on that disk, for hypervisors that boot kernels directly
#     cmdline        the kernel command line the disk's boot loader uses
#     manifest.json  what the directory holds (written last: a directory without it is junk)
# and points ${STRATUS_GUEST_CACHE}/current at it. <version> names the recipe (this script,
# syslinux.cfg and rootfs/, hashed) and the kernel package, so a changed recipe or a new
# Debian kernel builds a new guest and anything else reuses the cached one.
#
# The guest: Debian's kernel and busybox-static in an initramfs, booted by SYSLINUX from a
# small FAT file system that is the whole disk. No package is installed on this machine:
# everything comes from `apt-get download` and is unpacked with dpkg-deb. See README.md.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
RECIPE=1
CACHE=${STRATUS_GUEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stratus/guest}
#: the virtual size of the raw disk before conversion (the flavor's disk size grows it)
DISK_MB=48
#: kernel modules the guest loads, with what they depend on (see rootfs/etc/modules)
MODULES=$(cat "$HERE/rootfs/etc/modules")

FORCE=0
work=""
[ "${1:-}" = "--force" ] && FORCE=1

log() { echo "guest: $*" >&2; }

apt_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# the versioned kernel package behind Debian's linux-image-amd64 (e.g. linux-image-6.1.0-56-amd64)
kernel_package() {
    if [ -n "${STRATUS_GUEST_KERNEL:-}" ]; then
        echo "$STRATUS_GUEST_KERNEL"
        return
    fi
    local pkg
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
    if [ -z "$pkg" ]; then
        log "apt knows no linux-image-amd64: updating the package lists"
        apt_root apt-get update -q >&2
        pkg=$(apt-cache depends linux-image-amd64 |
            awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
    fi
    [ -n "$pkg" ] || { log "cannot find Debian's kernel package"; exit 1; }
    echo "$pkg"
}

recipe_hash() {
    (cd "$HERE" && find build.sh syslinux.cfg rootfs -type f | LC_ALL=C sort |
        while read -r f; do printf '%s %s\n' "$f" "$(stat -c %a "$f")"; sha256sum "$f"; done) |
        sha256sum | cut -c1-12
}

download() {
    local dir=$1
    shift
    mkdir -p "$dir"
    # root downloads unsandboxed: the _apt user may not write to a private temp directory
    if ! (cd "$dir" && apt-get -q -o APT::Sandbox::User=root download "$@" >&2); then
        log "download failed: updating the package lists and retrying"
        apt_root apt-get update -q >&2
        (cd "$dir" && apt-get -q -o APT::Sandbox::User=root download "$@" >&2)
    fi
}

# copy module $1 (a modules.dep path) and everything it depends on into the initramfs
copy_module_closure() {
    local tree=$1 kver=$2 dest=$3 name=$4 line path
    line=$(grep -E "/${name}\.ko(\.[a-z]+)?:" "$tree/lib/modules/$kver/modules.dep" || true)
    if [ -z "$line" ]; then
        if grep -qE "/${name}\.ko" "$tree/lib/modules/$kver/modules.builtin"; then
            return 0
        fi
        log "kernel $kver has no module $name"
        exit 1
    fi
    for path in ${line/:/}; do
        mkdir -p "$dest/lib/modules/$kver/$(dirname "$path")"
        cp "$tree/lib/modules/$kver/$path" "$dest/lib/modules/$kver/$path"
    done
}

build_initramfs() {
    local pkgs=$1 kver=$2 root=$3 out=$4 applet name
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,mnt/disk,root}
    cp -a "$HERE/rootfs/." "$root/"
    cp "$pkgs/bin/busybox" "$root/bin/busybox"
    # every applet as a link to busybox, where busybox says it belongs
    "$pkgs/bin/busybox" --list-full | while read -r applet; do
        [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
    done
    "$pkgs/bin/busybox" depmod -b "$pkgs" "$kver"
    for name in $MODULES; do
        copy_module_closure "$pkgs" "$kver" "$root" "$name"
    done
    cp "$pkgs/lib/modules/$kver"/modules.{order,builtin} "$root/lib/modules/$kver/"
    "$pkgs/bin/busybox" depmod -b "$root" "$kver"
    (cd "$root" && find . | LC_ALL=C sort | "$pkgs/bin/busybox" cpio -o -H newc 2>/dev/null) |
        gzip -9 > "$out"
}

build_disk() {
    local pkgs=$1 kernel=$2 initrd=$3 raw=$4
    local mtools=(env "PATH=$pkgs/usr/bin:$PATH" MTOOLS_SKIP_CHECK=1)
    rm -f "$raw"
    truncate -s "${DISK_MB}M" "$raw"
    # FAT on the whole disk (no partition table): SeaBIOS boots its first sector, which is
    # SYSLINUX's; the guest mounts /dev/vda itself to count its boots
    "${mtools[@]}" mformat -i "$raw" -T $((DISK_MB * 2048)) -h 64 -s 32 -v STRATUS ::
    # (--install writes ldlinux.sys and ldlinux.c32, the boot loader's core)
    "${mtools[@]}" "$pkgs/usr/bin/syslinux" --install "$raw"
    "${mtools[@]}" mcopy -o -i "$raw" "$HERE/syslinux.cfg" ::/syslinux.cfg
    "${mtools[@]}" mcopy -o -i "$raw" "$kernel" ::/vmlinuz
    "${mtools[@]}" mcopy -o -i "$raw" "$initrd" ::/initrd.img
}

# keep the $KEEP guests built last (other checkouts may use older recipes), drop the rest
KEEP=3
prune() {
    local old
    # shellcheck disable=SC2012  # names are ours: <recipe>-<kernel>-<hash>
    ls -1dt "$CACHE"/[0-9]*-*/ 2>/dev/null | tail -n +$((KEEP + 1)) | while read -r old; do
        log "removing the older guest $old"
        rm -rf "$old"
    done
}

main() {
    local kpkg kver version out started
    started=$(date +%s)
    command -v qemu-img > /dev/null || { log "qemu-img is needed (package qemu-utils)"; exit 1; }
    kpkg=$(kernel_package)
    kver=${kpkg#linux-image-}
    version="$RECIPE-$kver-$(recipe_hash)"
    out="$CACHE/$version"
    if [ "$FORCE" -eq 0 ] && [ -f "$out/manifest.json" ]; then
        ln -sfn "$version" "$CACHE/current"
        log "reusing $out"
        echo "$out"
        return
    fi
    mkdir -p "$CACHE"
    work=$(mktemp -d "$CACHE/.build.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    log "building guest $version"
    download "$work/debs" "$kpkg" busybox-static syslinux syslinux-common mtools
    for deb in "$work"/debs/*.deb; do
        dpkg-deb -x "$deb" "$work/pkgs"
    done
    mkdir -p "$work/out"
    cp "$work/pkgs/boot/vmlinuz-$kver" "$work/out/vmlinuz"
    build_initramfs "$work/pkgs" "$kver" "$work/initramfs" "$work/out/initrd.img"
    build_disk "$work/pkgs" "$work/out/vmlinuz" "$work/out/initrd.img" "$work/disk.raw"
    qemu-img convert -q -f raw -O qcow2 "$work/disk.raw" "$work/out/disk.qcow2"
    sed -n 's/^ *APPEND //p' "$HERE/syslinux.cfg" > "$work/out/cmdline"
    cat > "$work/out/manifest.json" << EOF
{
  "name": "stratus-guest-$version",
  "version": "$version",
  "kernel_package": "$kpkg",
  "disk": "disk.qcow2",
  "disk_format": "qcow2",
  "kernel": "vmlinuz",
  "initrd": "initrd.img",
  "cmdline": "$(cat "$work/out/cmdline")",
  "min_ram_mb": 128,
  "min_disk_gb": 0,
  "login_prompt": "stratus-guest login:"
}
EOF
    rm -rf "$out"
    mv "$work/out" "$out"
    ln -sfn "$version" "$CACHE/current"
    prune
    log "built $out in $(($(date +%s) - started)) s"
    echo "$out"
}

main
