#!/usr/bin/env bash
# apt-get "$@", waiting (up to APT_WAIT seconds in all, default 600) for another apt-get or dpkg to
# finish instead of failing at once: unattended-upgrades, or a second `make` in another shell.
# apt-get waits for the dpkg lock itself (DPkg::Lock::Timeout) but not for the package lists'
# lock that `apt-get update` takes, hence the loop.
set -uo pipefail
wait_limit=${APT_WAIT:-600}
waited=0
while true; do
  out=$(DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$((wait_limit - waited))" "$@" 2>&1)
  status=$?
  (( status == 0 )) && exit 0
  if [[ $out == *"Could not get lock"* ]] && (( waited < wait_limit )); then
    (( waited == 0 )) && echo "waiting for another package manager to finish: ${out%%$'\n'*}" >&2
    sleep 5
    waited=$((waited + 5))
    continue
  fi
  printf '%s\n' "$out" >&2
  exit "$status"
done
