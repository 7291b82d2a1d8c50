#!/usr/bin/env bash
# Installs what syncproof's tests need beyond the Rust toolchain, so that
# `scripts/test-deps.sh && cargo test` passes on a fresh machine:
#   - openssl (>= 3.0) and coreutils' sha256sum: independent signature and
#     digest checks of evidence packs;
#   - Debian's chromium and poppler-utils (pdftotext): the HTML report is
#     printed to PDF by a real browser and its text checked;
#   - the Python packages in tests/requirements.txt: DSSE/in-toto, SARIF and
#     OSCAL validators, a JUnit parser.
# Idempotent: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v sha256sum >/dev/null 2>&1 || need_apt+=(coreutils)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v pdftotext >/dev/null 2>&1 || need_apt+=(poppler-utils)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test-deps: installing Debian packages: ${need_apt[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! python3 -c 'import sys, importlib.metadata as m
reqs = [l.split("==") for l in open("tests/requirements.txt") if "==" in l and not l.startswith("#")]
sys.exit(0 if all(m.version(n.strip()) == v.strip() for n, v in reqs) else 1)' 2>/dev/null; then
  echo "test-deps: installing Python packages from tests/requirements.txt" >&2
  python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
