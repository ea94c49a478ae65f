#!/usr/bin/env bash
# The viewer's browser test drives Debian's chromium (tests/test_viewer_browser.py). `make test` calls this: it
# installs chromium when it is missing and this user may (root, apt-get); otherwise it says how, and the test
# skips (outside CI) with that reason.
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the viewer's browser test (once)"
    export DEBIAN_FRONTEND=noninteractive
    log=$(mktemp)
    # bounded: a machine without a package mirror must not hang `make test`
    timeout 900 apt-get install -y -qq chromium >"$log" 2>&1 \
        || { timeout 300 apt-get update -qq >>"$log" 2>&1 && timeout 900 apt-get install -y -qq chromium >>"$log" 2>&1; } \
        || { echo "warning: apt-get could not install chromium (the browser test will not run); its last words:"; \
             tail -n 5 "$log"; }
    rm -f "$log"
else
    echo "note: chromium is not installed; the viewer's browser test skips (install it: apt-get install chromium)"
fi
exit 0
