#!/usr/bin/env bash
# Build the amd64 .deb, check it with lintian, install it on this machine,
# use it from the installed paths, verify the unit, and remove it cleanly.
#
#   scripts/deb_check.sh            (as root, or with sudo available)
#
# What is checked: lintian shows no errors; dpkg installs it; the binary,
# unit, conffile and model are where they belong, the documentation is the
# installer's guide (docs/device.md as README.md), the `scanside` user
# exists in group `gpio`; `/usr/bin/scanside-device classify` with the
# packaged model (found through /usr/share/scanside/models) gives the
# decision recorded in models/expected.jsonl; `systemd-analyze verify`
# accepts the installed unit; the service is enabled but not started (no
# GPIO here); `dpkg --purge` removes every file the package installed
# and keeps /var/lib/scanside (the audit log must never be lost).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
fail() { echo "deb_check.sh: $*" >&2; exit 1; }

scripts/package.sh amd64
deb=$(ls -t "${CARGO_TARGET_DIR:-target}"/debian/scanside-device_*_amd64.deb | head -1)
echo "== $deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb" | awk '{print "   " $6}'

echo "== lintian"
# Errors fail the check; warnings are printed.
lintian --tag-display-limit 0 --fail-on error "$deb" || fail "lintian found errors"

echo "== install"
$SUDO dpkg --purge scanside-device >/dev/null 2>&1 || true
$SUDO dpkg -i "$deb"
unit=$(dpkg -L scanside-device | grep '/systemd/system/scanside-device.service$') \
  || fail "no systemd unit installed"
for f in /usr/bin/scanside-device /etc/scanside/device.toml \
         /usr/share/scanside/models/brain-mri-vgg16-int8.onnx "$unit" \
         /usr/share/doc/scanside-device/model-card.md \
         /usr/share/doc/scanside-device/README.md; do
  [ -e "$f" ] || fail "$f missing after install"
done
cmp -s /usr/share/doc/scanside-device/README.md docs/device.md \
  || fail "/usr/share/doc/scanside-device/README.md is not docs/device.md (the installer's guide)"
grep -qx /etc/scanside/device.toml /var/lib/dpkg/info/scanside-device.conffiles \
  || fail "device.toml is not a conffile"
id -nG scanside | grep -qw gpio || fail "user scanside is not in group gpio"
[ -d /var/lib/scanside/inbox ] || fail "/var/lib/scanside/inbox missing"
[ -L /etc/systemd/system/multi-user.target.wants/scanside-device.service ] \
  || fail "the service is not enabled"

echo "== classify from the installed paths"
scan=${SCANSIDE_SHARED:-../shared}/data/brain-mri/yes/Y1.jpg
line=$(cd / && env -u SCANSIDE_MODEL /usr/bin/scanside-device classify --json "$OLDPWD/$scan")
echo "   $line"
python3 - "$line" <<'PY'
import json, sys
got = json.loads(sys.argv[1])
want = json.loads(open("models/expected.jsonl").readline())
assert want["file"] == "yes/Y1.jpg", want
assert got["label"] == want["label"], (got, want)
assert abs(got["probability"] - want["probability"]) < 1e-5, (got, want)
PY

echo "== systemd-analyze verify"
systemd-analyze verify "$unit"

echo "== purge"
$SUDO dpkg --purge scanside-device
for f in /usr/bin/scanside-device /etc/scanside/device.toml \
         /usr/share/scanside "$unit" \
         /etc/systemd/system/multi-user.target.wants/scanside-device.service; do
  [ ! -e "$f" ] || fail "$f left after purge"
done
[ -d /var/lib/scanside ] || fail "/var/lib/scanside (audit log) was removed"
echo "deb_check.sh: ok"
