#!/usr/bin/env bash
# mypy over gateway.supervisor and gateway.http, with zero errors allowed.
#
# The folders supervisor/ and http/ are mapped to gateway.supervisor and gateway.http by
# pyproject's package-dir; the editable install resolves that with an import hook mypy cannot
# follow. So mypy reads them through a throwaway tree of symlinks with the real import names.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
SHIM="$(mktemp -d)"
trap 'rm -rf "$SHIM"' EXIT
mkdir -p "$SHIM/gateway"
ln -s "$ROOT/supervisor" "$SHIM/gateway/supervisor"
ln -s "$ROOT/http" "$SHIM/gateway/http"
cd "$SHIM"
"$PY" -m mypy --config-file "$ROOT/pyproject.toml" --python-executable "$PY" \
  --cache-dir "$ROOT/.mypy_cache" \
  -p gateway.supervisor -p gateway.http
