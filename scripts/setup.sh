#!/usr/bin/env bash
# One-command set-up on a fresh machine: Debian packages (ffmpeg, tesseract-ocr, chromium, OpenCV's libGL) and a virtual
# environment with the pinned Python packages. Safe to re-run: it only installs what is missing.
#   scripts/setup.sh          library + test tools (pytest, ruff, diffusers, playwright)
#   scripts/setup.sh --lib    library only
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
requirements=requirements-test.txt
[ "${1:-}" = "--lib" ] && requirements=requirements.txt

missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v tesseract >/dev/null || missing+=(tesseract-ocr)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# opencv-python (rapidocr and scenedetect require that build, not the headless one) loads libGL and GLib
ldconfig -p | grep -q 'libGL\.so\.1' || missing+=(libgl1)
ldconfig -p | grep -q 'libgthread-2\.0\.so\.0' || missing+=(libglib2.0-0)
if [ ${#missing[@]} -gt 0 ] && [ "${SKIP_APT:-0}" != 1 ]; then
  echo "installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# pip warns once per package when an index in the machine's pip configuration lacks it: nothing to act on here
pip_install() {
  "$VENV/bin/python" -m pip install -q "$@" \
    2> >(grep -v "^WARNING: Location '.*' is ignored: it is neither a file nor a directory\.$" >&2)
}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
stamp="$VENV/.installed-$(cat requirements.txt requirements-test.txt | sha256sum | cut -c1-16)-$requirements"
if [ ! -f "$stamp" ]; then
  echo "installing Python packages from $requirements into $VENV (the first time downloads torch: a few minutes)"
  pip_install --upgrade pip
  pip_install -r "$requirements"
  # setuptools warns on every editable install that folders named like the package shadow it: nothing to act on
  PYTHONWARNINGS="ignore:Editable installation" pip_install --no-deps -e .
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
echo "ready: $VENV"
