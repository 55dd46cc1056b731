#!/usr/bin/env bash
# Makes sure headless Chromium is on PATH for the HTML report test (`just test` runs it, as CI
# does): installs Debian's package when running as root, else fails with the command to run.
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
  if command -v "$name" >/dev/null 2>&1; then
    exit 0
  fi
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium: installing Debian's package for the HTML report test" >&2
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  exit 0
fi
echo "error: the HTML report test needs headless Chromium; install it (sudo apt-get install chromium) and rerun 'just test'" >&2
exit 2
