#!/usr/bin/env bash
# System packages the project needs: the Fashion-MNIST files (always) and Chromium
# (for the browser tests, with --browser). Installs with apt-get where we run as root;
# elsewhere says what to do, and the data falls back to a download into ./data/.
set -euo pipefail
want_browser=0
[ "${1:-}" = "--browser" ] && want_browser=1

packages=()
[ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || packages+=(dataset-fashion-mnist)
[ "$want_browser" = 1 ] && [ ! -x /usr/bin/chromium ] && packages+=(chromium)
[ ${#packages[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${packages[*]} with apt-get"
  here=$(dirname "$0")
  "$here/apt_get_waiting.sh" update -qq
  "$here/apt_get_waiting.sh" install -y -qq --no-install-recommends "${packages[@]}"
else
  echo "note: not root or no apt-get; cannot install ${packages[*]}." >&2
  echo "      run: sudo apt-get install ${packages[*]}" >&2
fi
