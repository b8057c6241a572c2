#!/usr/bin/env bash
# Build the scanside-device .deb packages with cargo-deb.
#
#   scripts/package.sh [amd64] [arm64] [armhf]     # default: all three
#
# amd64 is built natively; arm64 (Raspberry Pi OS 64-bit, Jetson) and armhf
# (Raspberry Pi OS 32-bit) are cross-built with the linkers of
# .cargo/config.toml. Prints the path of each package. Needs
# scripts/setup.sh's tools (cross compilers, cargo-deb).
set -euo pipefail
cd "$(dirname "$0")/.."

arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(amd64 arm64 armhf)
for arch in "${arches[@]}"; do
  case "$arch" in
    amd64) target=() ;;
    arm64) target=(--target aarch64-unknown-linux-gnu) ;;
    armhf) target=(--target armv7-unknown-linux-gnueabihf) ;;
    *) echo "package.sh: unknown architecture $arch (amd64, arm64, armhf)" >&2; exit 2 ;;
  esac
  printf '\n== scanside-device .deb for %s\n' "$arch"
  deb=$(cargo deb -p scanside-device "${target[@]}" | tail -1)
  echo "$deb"
  # The declared libc6 dependency must cover what the binary needs.
  unpacked=$(mktemp -d)
  dpkg-deb -x "$deb" "$unpacked"
  need=$(objdump -T "$unpacked/usr/bin/scanside-device" | grep -o 'GLIBC_[0-9.]*' \
    | sed 's/GLIBC_//' | sort -V | tail -1)
  # CharLS (JPEG-LS in DICOM) is C++: the declared libstdc++6 (>= 12) must
  # cover the newest GLIBCXX symbol version used (GCC 12's is 3.4.30, as on
  # JetPack 6 and Raspberry Pi OS Bookworm).
  need_cxx=$(objdump -T "$unpacked/usr/bin/scanside-device" | grep -o 'GLIBCXX_[0-9.]*' \
    | sed 's/GLIBCXX_//' | sort -V | tail -1)
  rm -rf "$unpacked"
  if [ -n "$need_cxx" ] && dpkg --compare-versions "$need_cxx" gt 3.4.30; then
    echo "package.sh: $deb needs GLIBCXX_$need_cxx, newer than GCC 12's libstdc++ (3.4.30)" >&2
    exit 1
  fi
  dpkg-deb -f "$deb" Depends | grep -q 'libstdc++6' \
    || { echo "package.sh: $deb does not declare libstdc++6" >&2; exit 1; }
  declared=$(dpkg-deb -f "$deb" Depends | sed -n 's/.*libc6 (>= \([0-9.]*\)).*/\1/p')
  if dpkg --compare-versions "$need" gt "$declared"; then
    echo "package.sh: $deb needs glibc $need but declares libc6 >= $declared" >&2
    exit 1
  fi
  echo "   needs glibc $need, GLIBCXX ${need_cxx:-none}; declares libc6 (>= $declared), libstdc++6 (>= 12)"
done
