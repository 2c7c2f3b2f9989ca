#!/usr/bin/env bash
# Headless Chromium for the browser tests, from Debian's packages: never a browser downloaded at run time.
set -euo pipefail
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "The browser tests need Chromium at $CHROMIUM (Debian/Ubuntu: apt-get install chromium)" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo"
fi
echo "==> installing chromium from the Debian packages (for the browser tests)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
