#!/usr/bin/env bash
# Builds vmm's test guest from Debian packages, once per machine:
#   build/guest/vmlinuz        Debian's current bookworm kernel (linux-image-*-amd64)
#   build/guest/initramfs.img  busybox-static + a few modules (virtio, 9p, SATA CD-ROM)
#                              + tests/guest/init,
#                              and for vmmtest.net=dhcp: udhcpc.script, a web
#                              root, users admin and root (password admin), and
#                              the host's dropbear (dropbear-bin) with the
#                              libraries ldd names and host keys made here
#   build/guest/uefi-disk.img  GPT disk whose ESP holds systemd-boot as
#                              EFI/BOOT/BOOTX64.EFI, a loader entry, kernel, initramfs
# Nothing is mounted: sfdisk writes the partition table, mtools the FAT.
# Prints the output directory.  Re-running reuses what is there unless the
# inputs (this script, init, udhcpc.script, the dropbear package) changed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${VMM_GUEST_DIR:-$root/build/guest}
dropbear=/usr/sbin/dropbear
stamp=$({
	cat "$here/build.sh" "$here/init" "$here/udhcpc.script"
	dpkg-query -W dropbear-bin 2>/dev/null
} | sha256sum | cut -c1-16)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] &&
	[ -f "$out/vmlinuz" ] && [ -f "$out/initramfs.img" ] && [ -f "$out/uefi-disk.img" ]; then
	echo "$out"
	exit 0
fi
for t in apt-get dpkg-deb cpio sfdisk mformat mcopy mmd ldd openssl dropbearkey $dropbear; do
	command -v $t >/dev/null || { echo "guest: $t is missing (make deps)" >&2; exit 1; }
done
esp_efi=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
[ -f $esp_efi ] || { echo "guest: $esp_efi is missing (apt-get install systemd-boot-efi)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/vmm-guest.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
chmod 755 "$work" # apt-get download drops privileges to _apt

# The current kernel: the package linux-image-amd64 depends on.
kpkg() { apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1; }
pkg=$(kpkg)
if [ -z "$pkg" ]; then
	apt-get update -qq >&2
	pkg=$(kpkg)
fi
[ -n "$pkg" ] || { echo "guest: no linux-image-*-amd64 package known to apt" >&2; exit 1; }
fetch() { apt-get download -q "$pkg" busybox-static >&2 2> >(grep -v 'unsandboxed' >&2); }
if ! fetch; then
	# lists older than the archive name a package that is gone: refresh once
	apt-get update -qq >&2
	pkg=$(kpkg)
	fetch || { echo "guest: cannot download $pkg and busybox-static" >&2; exit 1; }
fi
dpkg-deb -x linux-image-*.deb k
dpkg-deb -x busybox-static_*.deb b
kver=$(ls k/lib/modules | head -1)

mkdir -p ir/bin ir/lib/modules ir/proc ir/sys ir/dev ir/etc ir/tmp
cp b/bin/busybox ir/bin/busybox
cp "$here/init" ir/init
chmod 755 ir/init ir/bin/busybox
# 9p for `vmm run --dir`, SATA and sr for `--disk x.iso` (the CD-ROM)
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
	virtio_blk failover net_failover virtio_net button evdev \
	netfs fscache 9pnet 9pnet_virtio 9p scsi_common scsi_mod cdrom sr_mod libata libahci ahci \
	isofs; do
	f=$(find k/lib/modules/"$kver" -name "$m.ko" | head -1)
	[ -n "$f" ] || { echo "guest: module $m.ko not in $pkg" >&2; exit 1; }
	cp "$f" ir/lib/modules/
done

# vmmtest.net=dhcp: the DHCP client's script, users, a web root, dropbear
cp "$here/udhcpc.script" ir/etc/udhcpc.script
chmod 755 ir/etc/udhcpc.script
mkdir -p ir/home/admin ir/root ir/www/cgi-bin ir/etc/dropbear ir/var/log
hash=$(openssl passwd -6 -salt vmmtest admin)
printf 'root:x:0:0:root:/root:/bin/sh\nadmin:x:1000:1000:admin:/home/admin:/bin/sh\n' >ir/etc/passwd
printf 'root:x:0:\ntty:x:5:\nadmin:x:1000:\n' >ir/etc/group
printf 'root:%s:19000:0:99999:7:::\nadmin:%s:19000:0:99999:7:::\n' "$hash" "$hash" >ir/etc/shadow
chmod 600 ir/etc/shadow
printf '/bin/sh\n/bin/ash\n' >ir/etc/shells
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >ir/etc/nsswitch.conf
printf '127.0.0.1 localhost\n127.0.1.1 vmmtest\n' >ir/etc/hosts
cat >ir/www/cgi-bin/tick <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
cat /run/vmmtest.tick
CGI
cat >ir/www/cgi-bin/info <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
echo "vmmtest boot=$(cat /proc/sys/kernel/random/boot_id) tick=$(cat /run/vmmtest.tick)" \
	"ip=$(cat /run/vmmtest.ip 2>/dev/null)"
CGI
chmod 755 ir/www/cgi-bin/tick ir/www/cgi-bin/info
# dropbear is linked dynamically: the loader and libraries go where ldd finds them
cp $dropbear ir/bin/dropbear
for l in $(ldd $dropbear | grep -o '/[^ ]*'); do
	mkdir -p "ir$(dirname "$l")"
	cp -L "$l" "ir$l"
done
for t in ed25519 ecdsa rsa; do
	dropbearkey -t $t -f ir/etc/dropbear/dropbear_${t}_host_key >/dev/null 2>&1
done
(cd ir && find . | cpio -o -H newc -R 0:0 --quiet | gzip -6) >initramfs.img
cp k/boot/vmlinuz-"$kver" vmlinuz

# UEFI disk: GPT, one 64 MiB ESP at 1 MiB
disk=uefi-disk.img
truncate -s 80M $disk
printf 'label: gpt\nstart=2048, size=131072, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="ESP"\n' |
	sfdisk -q $disk
esp="$disk@@1M"
export MTOOLS_SKIP_CHECK=1
mformat -i "$esp" -T 131072 -h 64 -s 32 -v ESP ::
mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
mcopy -i "$esp" $esp_efi ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$esp" vmlinuz ::/vmlinuz
mcopy -i "$esp" initramfs.img ::/initramfs.img
printf 'default vmmtest.conf\ntimeout 0\n' >loader.conf
printf 'title vmm test guest\nlinux /vmlinuz\ninitrd /initramfs.img\noptions console=ttyS0 quiet vmmtest.fill=16\n' >vmmtest.conf
mcopy -i "$esp" loader.conf ::/loader/loader.conf
mcopy -i "$esp" vmmtest.conf ::/loader/entries/vmmtest.conf

mkdir -p "$out"
for f in vmlinuz initramfs.img uefi-disk.img; do
	cp --sparse=always $f "$out/$f.tmp" && mv "$out/$f.tmp" "$out/$f"
done
echo "$pkg" >"$out/kernel-package"
echo "$stamp" >"$out/stamp"
echo "$out"
