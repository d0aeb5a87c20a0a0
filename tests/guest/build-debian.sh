#!/usr/bin/env bash
# Builds vmm's realistic test image, once per machine: an amd64 Linux disk
# shaped like the Tart images Orchard runs on Linux (ghcr.io/cirruslabs/
# ubuntu-runner-amd64), made from Debian bookworm's packages with mmdebstrap:
#   build/guest-debian/disk.img   GPT raw disk (2 GiB, sparse):
#     1  ESP, FAT, 64 MiB: systemd-boot as EFI/BOOT/BOOTX64.EFI, one loader
#        entry for Debian's cloud kernel + initrd (console=ttyS0)
#     2  root, ext4 (type "Linux root x86-64"), the rest of the disk; it grows
#        to the end of a bigger disk at boot (systemd-repart + growfs)
#   build/guest-debian/packages   what is installed (dpkg-query)
# Inside: systemd, systemd-networkd with DHCP on en* and eth* (client id =
# MAC), systemd-resolved, openssh-server with password logins, user admin
# (password admin, passwordless sudo), hostname vmm-debian, a getty on ttyS0,
# python3 with python3-grpcio and python3-protobuf.  Once sshd runs and an
# interface has an IPv4 address, the serial console says
# "VMMTEST SSH READY <addr>".
# Needs root (mmdebstrap's root mode keeps file owners for mkfs.ext4 -d).
# Nothing is mounted on the host: mkfs.ext4 -d writes the root file system at
# its partition's offset, mtools the FAT.  Packages come from the mirrors
# apt is configured with on this machine.  Prints the output directory;
# re-running reuses it unless this script changed.  Exits 3 when this machine
# lacks what the build needs (root, a tool), 1 when the build itself fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${VMM_GUEST_DEBIAN_DIR:-$root/build/guest-debian}
stamp=$(sha256sum <"$here/build-debian.sh" | cut -c1-16)
cached() { [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] && [ -f "$out/disk.img" ]; }
if cached; then
	echo "$out"
	exit 0
fi
die() { echo "guest-debian: $*" >&2; exit 1; }
cannot() { echo "guest-debian: $*" >&2; exit 3; }
[ "$(id -u)" -eq 0 ] || cannot "needs root (mmdebstrap's root mode)"
for t in mmdebstrap mkfs.ext4 sfdisk partx mformat mcopy mmd apt-get; do
	command -v $t >/dev/null || cannot "$t is missing (make deps)"
done
# merged /usr made by mmdebstrap itself: else apt satisfies init-system-helpers
# with the usrmerge package, which brings perl (47 MiB)
usrhooks=/usr/share/mmdebstrap/hooks/merged-usr
[ -d $usrhooks ] || cannot "$usrhooks is missing (mmdebstrap too old)"
esp_efi=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
[ -f $esp_efi ] || cannot "$esp_efi is missing (apt-get install systemd-boot-efi)"

# one build at a time per output directory; a waiter takes the result
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
if cached; then
	echo "$out"
	exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/vmm-guest-debian.XXXXXX")
# --one-file-system: should mmdebstrap ever leave /proc or /dev mounted in
# the tree, rm must not descend into them
trap 'rm -rf --one-file-system "$work"' EXIT
chmod 755 "$work"

# bookworm's main, -updates and -security from apt's own configuration
mirrors=()
while read -r site rel; do
	mirrors+=("deb $site $rel main")
done < <(apt-get indextargets --format '$(SITE) $(RELEASE)' 'Component: main' 2>/dev/null |
	grep -E ' bookworm(-updates|-security)?$' | sort -u)
[ ${#mirrors[@]} -gt 0 ] || mirrors=("deb http://deb.debian.org/debian bookworm main")

disk_mib=2048 esp_mib=64
rootuuid=$(cat /proc/sys/kernel/random/uuid)
pkgs=systemd,systemd-sysv,udev,dbus,systemd-resolved,linux-image-cloud-amd64,initramfs-tools,zstd
pkgs=$pkgs,openssh-server,sudo,iproute2,iputils-ping,procps,netbase
pkgs=$pkgs,python3,python3-grpcio,python3-protobuf

# Before the kernel's package runs update-initramfs: an initrd with only
# what a virtio, SCSI or NVMe disk needs (the cloud kernel has ext4 built in).
cat >"$work/essential-hook" <<'HOOK'
#!/bin/sh
set -e
mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"
printf "MODULES=list\nCOMPRESS=zstd\n" >"$1/etc/initramfs-tools/conf.d/vmm.conf"
printf "virtio_pci\nvirtio_blk\nvirtio_scsi\nsd_mod\nnvme\n" >"$1/usr/share/initramfs-tools/modules.d/vmm"
HOOK
cat >"$work/customize-hook" <<'HOOK'
#!/bin/sh
set -e
r=$1
echo vmm-debian >"$r/etc/hostname"
printf "127.0.0.1\tlocalhost\n127.0.1.1\tvmm-debian\n::1\tlocalhost ip6-localhost ip6-loopback\n" >"$r/etc/hosts"
printf "UUID=%s\t/\text4\trw,discard,x-systemd.growfs\t0\t0\n" "$ROOTUUID" >"$r/etc/fstab"

chroot "$r" useradd --create-home --shell /bin/bash --groups sudo admin
# SHA-512 rather than bookworm's yescrypt: each login under TCG pays for the hash
echo admin:admin | chroot "$r" chpasswd --crypt-method SHA512
printf "admin ALL=(ALL) NOPASSWD:ALL\n" >"$r/etc/sudoers.d/admin"
chmod 440 "$r/etc/sudoers.d/admin"
printf "PasswordAuthentication yes\nKbdInteractiveAuthentication no\nUseDNS no\nPrintLastLog no\n" \
	>"$r/etc/ssh/sshd_config.d/vmm.conf"
# no motd scripts to run at each login
rm -f "$r"/etc/update-motd.d/*
: >"$r/etc/motd"

cat >"$r/etc/systemd/network/20-wired.network" <<EOF
[Match]
Name=en* eth*

[Network]
DHCP=ipv4

[DHCPv4]
ClientIdentifier=mac
EOF
chroot "$r" systemctl enable systemd-networkd.service systemd-resolved.service

# the root partition takes a bigger disk (vmm set --disk-size), growfs the file system
mkdir -p "$r/etc/repart.d"
printf "[Partition]\nType=root\n" >"$r/etc/repart.d/50-root.conf"

cat >"$r/usr/local/sbin/vmmtest-ready" <<"EOF"
#!/bin/sh
# tells the serial console that sshd runs and which address the guest has
for i in $(seq 1 240); do
	# "2: enp0s2    inet 10.0.2.15/24 ..."
	set -- $(ip -4 -o addr show scope global)
	a=${4%/*}
	[ -n "$a" ] && break
	sleep 0.5
done
echo "VMMTEST SSH READY ${a:-none}" >/dev/console
EOF
chmod 755 "$r/usr/local/sbin/vmmtest-ready"
cat >"$r/etc/systemd/system/vmmtest-ready.service" <<EOF
[Unit]
Description=Say on the serial console that SSH is up
After=ssh.service
Wants=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/vmmtest-ready

[Install]
WantedBy=multi-user.target
EOF
chroot "$r" systemctl enable vmmtest-ready.service

# boots faster under TCG: no KVM modules for an emulated SVM/VMX, no serio_raw
printf "blacklist kvm_amd\nblacklist kvm_intel\nblacklist kvm\nblacklist serio_raw\n" \
	>"$r/etc/modprobe.d/vmm.conf"

# no apt or dpkg timers, no prompts on a first boot
chroot "$r" systemctl mask apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
	systemd-firstboot.service
chroot "$r" dpkg-query -W >"$WORK/packages"
HOOK
chmod 755 "$work/essential-hook" "$work/customize-hook"

echo "guest-debian: mmdebstrap bookworm (${mirrors[*]})" >&2
t0=$SECONDS
ROOTUUID=$rootuuid WORK=$work mmdebstrap --quiet --variant=apt --include="$pkgs" \
	--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
	--hook-dir=$usrhooks \
	--essential-hook="$work/essential-hook" --customize-hook="$work/customize-hook" \
	bookworm "$work/root" "${mirrors[@]}" >&2
echo "guest-debian: root file system in $((SECONDS - t0)) s, $(du -sm "$work/root" | cut -f1) MiB" >&2

kernel=$(ls "$work"/root/boot/vmlinuz-* | head -1)
initrd=$(ls "$work"/root/boot/initrd.img-* | head -1)
[ -f "$kernel" ] && [ -f "$initrd" ] || die "no kernel or initrd in /boot"

# GPT: ESP at 1 MiB, root after it to the end
disk=$work/disk.img
truncate -s ${disk_mib}M "$disk"
root_start=$((1 + esp_mib))
sfdisk -q "$disk" <<EOF
label: gpt
start=1MiB, size=${esp_mib}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="ESP"
start=${root_start}MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="root"
EOF
# the file system fills its partition (mke2fs rounds down to a whole MiB,
# growfs takes the rest at the first boot in a few milliseconds)
root_kib=$(($(partx -g -o SECTORS -n 2 "$disk") / 8 * 4))
mkfs.ext4 -q -F -L root -U "$rootuuid" -m 1 -d "$work/root" \
	-E offset=$((root_start * 1024 * 1024)) "$disk" ${root_kib}k

esp="$disk@@1M"
export MTOOLS_SKIP_CHECK=1
mformat -i "$esp" -T $((esp_mib * 2048)) -h 64 -s 32 -v ESP ::
mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
mcopy -i "$esp" $esp_efi ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$esp" "$kernel" ::/vmlinuz
mcopy -i "$esp" "$initrd" ::/initrd.img
printf 'default debian.conf\ntimeout 0\n' >"$work/loader.conf"
printf 'title Debian GNU/Linux 12 (vmm test image)\nlinux /vmlinuz\ninitrd /initrd.img\noptions root=UUID=%s rw console=ttyS0 quiet\n' \
	"$rootuuid" >"$work/debian.conf"
mcopy -i "$esp" "$work/loader.conf" ::/loader/loader.conf
mcopy -i "$esp" "$work/debian.conf" ::/loader/entries/debian.conf

cp --sparse=always "$disk" "$out/disk.img.tmp" && mv "$out/disk.img.tmp" "$out/disk.img"
cp "$work/packages" "$out/packages"
echo "$stamp" >"$out/stamp"
echo "guest-debian: $out/disk.img in $((SECONDS - t0)) s, $(du -m "$out/disk.img" | cut -f1) MiB allocated" >&2
echo "$out"
