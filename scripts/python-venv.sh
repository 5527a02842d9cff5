#!/usr/bin/env bash
# A Python venv with the published `e2b` SDK, for __test__/python-e2b.test.mjs. Prints the venv's
# python on stdout (progress goes to stderr).
#
#   scripts/python-venv.sh            # e2b==2.63.0
#   E2B_PY_VERSION=2.61.0 scripts/python-venv.sh
#
# The venv lives outside the clone, in ${XDG_CACHE_HOME:-$HOME/.cache}/sandbank-test/py-e2b-<version>
# (SANDBANK_PY_CACHE moves the parent directory), and is made only when it is missing or broken
# (its python cannot import that very version of e2b). Idempotent and safe when runs race: the venv
# is built in a temporary directory beside it and renamed into place, and a lock (flock, when
# there is one) keeps a second run from downloading the same wheels meanwhile; if another run
# renamed its venv first, ours is thrown away. Only `bin/python` is used, which works whatever the
# directory is called (the console scripts' shebangs would name the temporary directory).
#
# The interpreter: $SANDBANK_PYTHON, else /usr/bin/python3 (scripts/system-deps.sh makes sure it has
# the venv module), else python3 on PATH.
set -euo pipefail

version="${E2B_PY_VERSION:-2.63.0}"
cache="${SANDBANK_PY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandbank-test}"
venv="$cache/py-e2b-$version"
if [ -n "${SANDBANK_PYTHON:-}" ]; then
  base="$SANDBANK_PYTHON"
elif [ -x /usr/bin/python3 ]; then
  base=/usr/bin/python3
else
  base=python3
fi

ok() {
  [ -x "$1/bin/python" ] &&
    "$1/bin/python" -c 'import sys, importlib.metadata as m; import e2b; sys.exit(m.version("e2b") != sys.argv[1])' "$version" >/dev/null 2>&1
}

if ok "$venv"; then
  echo "$venv/bin/python"
  exit 0
fi

mkdir -p "$cache"
if command -v flock >/dev/null; then
  exec 9>"$cache/.py-e2b-$version.lock"
  flock 9
  if ok "$venv"; then # another run made it while we waited
    echo "$venv/bin/python"
    exit 0
  fi
fi

tmp="$(mktemp -d "$cache/.py-e2b-$version.XXXXXX")"
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "python-venv: making $venv with e2b==$version ($("$base" --version 2>&1))" >&2
"$base" -m venv "$tmp" >&2
"$tmp/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "e2b==$version" >&2
ok "$tmp" || { echo "python-venv: e2b==$version does not import in the new venv" >&2; exit 1; }

# A broken venv in the way (an interrupted older layout, a removed base python): set it aside.
if [ -e "$venv" ] && ! ok "$venv"; then
  old="$(mktemp -d "$cache/.py-e2b-$version.old.XXXXXX")"
  mv -T "$venv" "$old/venv" 2>/dev/null || true
  rm -rf "$old"
fi
# rename(2) onto a non-empty directory fails: then another run got there first, and we keep theirs.
if mv -T "$tmp" "$venv" 2>/dev/null; then
  trap - EXIT
fi
ok "$venv" || { echo "python-venv: $venv is not usable" >&2; exit 1; }
echo "$venv/bin/python"
