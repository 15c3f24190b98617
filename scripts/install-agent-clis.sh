#!/usr/bin/env bash
# Install the real agent CLIs (pinned) into the project-local npm prefix .tools/node.
#
#   scripts/install-agent-clis.sh          # idempotent: skips when the pinned versions run
#   FORCE=1 scripts/install-agent-clis.sh  # reinstall
#
# Both packages ship their native binary as an npm optional dependency
# (@anthropic-ai/claude-code-linux-x64, @openai/codex-linux-x64 ...), so this needs the npm
# registry only. claude-code's postinstall (install.cjs) just copies/links that binary over the
# bin/claude.exe stub; it downloads nothing. Prints the bin dir on success.
set -euo pipefail

CLAUDE_CODE_VERSION="${CLAUDE_CODE_VERSION:-2.1.332}"
CODEX_VERSION="${CODEX_VERSION:-0.171.0}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/.tools/node"
BIN="$PREFIX/node_modules/.bin"

die() { echo "install-agent-clis: ERROR: $*" >&2; exit 1; }

command -v npm >/dev/null 2>&1 || die "npm not found on PATH (need node >= 20 and npm)"
command -v node >/dev/null 2>&1 || die "node not found on PATH"

installed_version() { # $1 = package name; prints its installed version or nothing
  local pj="$PREFIX/node_modules/$1/package.json"
  [[ -f "$pj" ]] || return 0
  node -e 'process.stdout.write(require(process.argv[1]).version)' "$pj" 2>/dev/null || true
}

runs_ok() { # $1 = cli name, $2 = version expected in its --version output
  [[ -x "$BIN/$1" ]] || return 1
  local out
  out="$("$BIN/$1" --version 2>/dev/null </dev/null)" || return 1
  [[ "$out" == *"$2"* ]]
}

if [[ -z "${FORCE:-}" ]] \
  && [[ "$(installed_version @anthropic-ai/claude-code)" == "$CLAUDE_CODE_VERSION" ]] \
  && [[ "$(installed_version @openai/codex)" == "$CODEX_VERSION" ]] \
  && runs_ok claude "$CLAUDE_CODE_VERSION" && runs_ok codex "$CODEX_VERSION"; then
  echo "install-agent-clis: claude-code $CLAUDE_CODE_VERSION and codex $CODEX_VERSION already installed"
  echo "$BIN"
  exit 0
fi

mkdir -p "$PREFIX"
echo "install-agent-clis: installing @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" \
  "@openai/codex@$CODEX_VERSION into $PREFIX" >&2
# --include=optional: the native binaries are optional dependencies; a global
# omit=optional would leave only stubs. --foreground-scripts: show install.cjs's output.
# npm shows no progress off a terminal: say every 15 s that it is still working.
( while sleep 15; do echo "install-agent-clis: npm still installing (${SECONDS}s so far)" >&2; done ) &
ticker=$!
trap 'kill "$ticker" 2>/dev/null || true' EXIT
if ! npm install --prefix "$PREFIX" --no-audit --no-fund --include=optional \
  --foreground-scripts --loglevel=error \
  "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" "@openai/codex@$CODEX_VERSION" >&2; then
  die "npm install failed (is the npm registry reachable? see the npm output above)"
fi
kill "$ticker" 2>/dev/null || true

# npm versions that gate install scripts (allowScripts) may skip claude-code's postinstall,
# leaving the bin/claude.exe placeholder. Running it by hand is harmless when it already ran.
if ! runs_ok claude "$CLAUDE_CODE_VERSION"; then
  echo "install-agent-clis: running claude-code's install.cjs by hand" >&2
  (cd "$PREFIX/node_modules/@anthropic-ai/claude-code" && node install.cjs >&2) \
    || die "claude-code install.cjs failed"
fi

runs_ok claude "$CLAUDE_CODE_VERSION" \
  || die "claude $CLAUDE_CODE_VERSION does not run after install ($BIN/claude --version failed;" \
    "is the platform package @anthropic-ai/claude-code-$(node -p 'process.platform+"-"+process.arch') installed?)"
runs_ok codex "$CODEX_VERSION" \
  || die "codex $CODEX_VERSION does not run after install ($BIN/codex --version failed)"

echo "install-agent-clis: OK: $("$BIN/claude" --version </dev/null), $("$BIN/codex" --version </dev/null)" >&2
echo "$BIN"
