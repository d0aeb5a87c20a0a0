#!/usr/bin/env bash
# Install the Debian packages vmm needs to build, run and be tested, if any
# are missing.  Runs apt-get as root (or through sudo).  Idempotent and quiet
# when everything is present.
set -eu

arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
build="gcc make pkg-config clang libcurl4-openssl-dev libjansson-dev libzstd-dev
       libarchive-dev liblz4-dev libssl-dev libcmocka-dev libmnl-dev libnghttp2-dev"
# (virtiofsd is not in Debian 12: `vmm run --dir` shares through QEMU's 9p)
run="qemu-utils zstd slirp4netns nftables libcap2-bin"
case $arch in
amd64) run="$run qemu-system-x86 ovmf qemu-system-arm qemu-efi-aarch64" ;; # Tart's images are arm64
arm64) run="$run qemu-system-arm qemu-efi-aarch64" ;;
esac
tests="docker-registry skopeo btrfs-progs xfsprogs e2fsprogs mtools fdisk busybox-static
       systemd-boot-efi apache2-utils python3 python3-cryptography curl cpio hyperfine
       util-linux openssl libarchive-tools
       mmdebstrap dropbear-bin sshpass openssh-client dnsmasq-base iproute2
       python3-grpcio python3-grpc-tools xorriso bc"

missing=()
for p in $build $run $tests; do
	# a package is present when dpkg says "install ok installed"
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
