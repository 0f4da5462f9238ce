# Sourced by generate.sh and test.sh: makes sure the pinned tools of
# requirements-dev.txt are installed in a venv outside the repository and
# sets $VENV to it. The venv is rebuilt whenever requirements-dev.txt
# changes; override its place with TANDEM_PYTHON_VENV.

VENV=${TANDEM_PYTHON_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/python-venv}

ensure_venv() {
  local here requirements stamp want python
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  requirements="$here/requirements-dev.txt"
  stamp="$VENV/.tandem-requirements"
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return
  fi
  python=${PYTHON:-python3}
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "the Python SDK needs Python >= 3.10 ($python is older)" >&2; return 1; }
  echo "installing the Python SDK tools into $VENV" >&2
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$python" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" >"$stamp"
}
