#!/bin/sh
# Open an HTML page in headless Chromium (Debian's `chromium` package, which
# scripts/setup.sh installs), save a screenshot, and fail if the page wrote
# anything to the JavaScript console or the screenshot was not written.
#
#   scripts/browser_check.sh PAGE.html SCREENSHOT.png
#
# The flags keep Chromium off the network (this machine has none but the
# package registries) and give it a fresh, throw-away profile.
set -eu
page=$1
shot=$2
[ -f "$page" ] || { echo "browser_check: $page: no such file" >&2; exit 2; }
command -v chromium >/dev/null || { echo "browser_check: chromium is not installed (run scripts/setup.sh)" >&2; exit 2; }
profile=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$profile" "$log"' EXIT
rm -f "$shot"
abs=$(cd "$(dirname "$page")" && pwd)/$(basename "$page")
timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --enable-logging=stderr --v=0 --hide-scrollbars \
  --window-size=1100,6000 --screenshot="$shot" "file://$abs" >"$log" 2>&1 || {
  cat "$log" >&2
  echo "browser_check: chromium failed on $page" >&2
  exit 1
}
if grep -q ':CONSOLE' "$log"; then
  grep ':CONSOLE' "$log" >&2
  echo "browser_check: $page wrote to the console" >&2
  exit 1
fi
[ -s "$shot" ] || { echo "browser_check: no screenshot written" >&2; exit 1; }
echo "browser_check: $page opened without console messages; screenshot $shot"
