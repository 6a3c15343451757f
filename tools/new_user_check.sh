#!/usr/bin/env bash
# A new user's first run: a fresh clone, a new venv, the README's two commands, with no data set and
# no network while they run. Prints each command's exit code and wall time beside what the README says.
#   tools/new_user_check.sh [WORKDIR]        (default: a new temporary directory)
# The `pip install` half of each README line needs the package registry, so it runs with the
# network; the `python -m ...` half runs in a network namespace with no interface up
# (`unshare -n`, loopback only) and with /usr/share/datasets hidden behind an empty directory (`unshare -m`),
# HOME and XDG_CACHE_HOME empty, JAXNETS_SHARED_DATA unset and no ../shared beside the clone.
# Both need root; without it the run says so and uses JAXNETS_NO_SYSTEM_DATA=1 with the network on.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d /tmp/jaxnets-new-user.XXXXXX)}"
mkdir -p "$work" && cd "$work" || exit 2
[ -e jaxnets ] && { echo "$work/jaxnets exists: give an empty WORKDIR" >&2; exit 2; }
git clone -q "$repo" jaxnets && cd jaxnets || exit 2
mkdir -p "$work/home" "$work/empty"
python3 -m venv .venv && . .venv/bin/activate && python -m pip install -q --upgrade pip
unset JAXNETS_SHARED_DATA JAXNETS_DATA
export HOME="$work/home" XDG_CACHE_HOME="$work/home/.cache"
isolated() {  # run "$@" with no network and no system data sets
  if [ "$(id -u)" = 0 ]; then
    # loopback up (a machine without a network still has one; the tests' download servers use it)
    unshare -mn bash -c 'ip link set lo up; mount --bind "$0" /usr/share/datasets 2>/dev/null || true; exec "$@"' "$work/empty" "$@"
  else
    echo "(not root: network left on, system data switched off with JAXNETS_NO_SYSTEM_DATA=1)"
    JAXNETS_NO_SYSTEM_DATA=1 "$@"
  fi
}
timed() {  # label, command...: prints exit code and wall seconds
  local t0=$SECONDS; "${@:2}"; local rc=$?
  echo "== $1: exit $rc, $((SECONDS - t0)) s wall"; return $rc
}
grep -n "python -m experiments.reproduce  \|python -m pytest -q " README.md | head -2
timed "pip install -e ." pip install -q -e . ; a=$?
timed "python -m experiments.reproduce" isolated python -m experiments.reproduce ; b=$?
timed 'pip install -e ".[test]"' pip install -q -e ".[test]" ; c=$?
timed "python -m pytest -q" isolated /usr/bin/time -f "peak RSS of the largest process %M KB" python -m pytest -q ; d=$?
timed "python -m pytest -q -m e2e" isolated /usr/bin/time -f "peak RSS of the largest process %M KB" python -m pytest -q -m e2e ; e=$?
echo "== git status after both (should be empty):"; git status --short
echo "== README's times:"; sed -n '/<!-- times:start -->/,/<!-- times:end -->/p' README.md | head -3
exit $(( a || b || c || d || e ))
