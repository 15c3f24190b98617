"""Locate the real agent CLIs and build the environment that points them at a ModelDouble.

Install the CLIs with ``scripts/install-agent-clis.sh`` (into ``.tools/node``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from model_double import ModelDouble

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO_ROOT / ".tools" / "node" / "node_modules" / ".bin"

# Variables inherited from a developer's shell (or from an agent session running the tests)
# that would point the CLIs somewhere else, change their auth, or make claude think it is
# nested inside another Claude Code session. They are dropped, never read.
_STRIP_PREFIXES = (
    "ANTHROPIC_",
    "CLAUDE",
    "OPENAI_",
    "CODEX_",
    "AWS_",
    "GOOGLE_",
    "VERTEX_",
    "MCP_",
    "OTEL_",
)
_STRIP_EXACT = {
    "IS_SANDBOX",  # lets claude accept --dangerously-skip-permissions as root; keep it explicit
    "DISABLE_TELEMETRY",
    "NODE_OPTIONS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
}

MODEL_DOUBLE_API_KEY = "sk-model-double"
CODEX_ENV_KEY = "MODEL_DOUBLE_API_KEY"


def find_cli(name: str) -> str | None:
    """Path of ``claude`` / ``codex``: the project-local install first, then PATH."""
    local = TOOLS_BIN / name
    if local.exists() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def codex_native_binary() -> str | None:
    """The native codex executable inside the npm platform package, or None.

    ``.bin/codex`` is a node wrapper (``bin/codex.js``): on node < 22.15 it *spawns* the native
    binary as a child (newer node ``execve``s it), so signals to the wrapper's pid are only
    forwarded, and a SIGKILL to the wrapper orphans the running native codex. Running this path
    directly gives one process."""
    pkg_root = REPO_ROOT / ".tools" / "node" / "node_modules" / "@openai"
    for candidate in sorted(pkg_root.glob("codex-*/vendor/*/bin/codex")):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def base_env(home_dir: str | os.PathLike[str]) -> dict[str, str]:
    """A clean environment: the caller's minus model/agent variables, with HOME replaced."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIP_PREFIXES) and k not in _STRIP_EXACT}
    home = str(home_dir)
    env["HOME"] = home
    env["XDG_CONFIG_HOME"] = os.path.join(home, ".config")
    env["XDG_CACHE_HOME"] = os.path.join(home, ".cache")
    env["XDG_DATA_HOME"] = os.path.join(home, ".local", "share")
    env["XDG_STATE_HOME"] = os.path.join(home, ".local", "state")
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.setdefault("PATH", os.defpath)
    if TOOLS_BIN.is_dir():
        env["PATH"] = f"{TOOLS_BIN}{os.pathsep}{env['PATH']}"
    env["NO_COLOR"] = "1"
    env["TERM"] = "dumb"
    return env


def claude_env(md: ModelDouble, home_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Environment for ``claude -p`` talking to ``md`` only. ``home_dir`` must exist; claude
    keeps its config (``.claude.json``) and sessions (``.claude/projects/...``) there, so reuse
    the same ``home_dir`` for a ``--resume``."""
    Path(home_dir).mkdir(parents=True, exist_ok=True)
    env = base_env(home_dir)
    env.update(
        {
            "ANTHROPIC_BASE_URL": md.base_url,
            "ANTHROPIC_API_KEY": MODEL_DOUBLE_API_KEY,
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_BUG_COMMAND": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
            "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
            # Keep the bash tool's stdout small and predictable.
            "BASH_MAX_OUTPUT_LENGTH": "30000",
        }
    )
    return env


CODEX_CONFIG = """\
model = "gpt-5.5"
model_provider = "modeldouble"
approval_policy = "never"
sandbox_mode = "danger-full-access"
check_for_update_on_startup = false

[model_providers.modeldouble]
name = "Model double"
base_url = "{base_url}/v1"
wire_api = "responses"
env_key = "{env_key}"
supports_websockets = false
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 60000

[analytics]
enabled = false

[feedback]
enabled = false

[history]
persistence = "save-all"
"""


def codex_env(md: ModelDouble, codex_home: str | os.PathLike[str]) -> dict[str, str]:
    """Environment for ``codex exec`` talking to ``md`` only. Writes ``codex_home/config.toml``;
    reuse the same ``codex_home`` for ``codex exec resume``."""
    home = Path(codex_home)
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(CODEX_CONFIG.format(base_url=md.base_url, env_key=CODEX_ENV_KEY))
    env = base_env(home)
    env.update(
        {
            "CODEX_HOME": str(home),
            CODEX_ENV_KEY: MODEL_DOUBLE_API_KEY,
            "RUST_LOG": "error",
        }
    )
    return env


# --------------------------------------------------------------------------- running


@dataclass
class CliRun:
    """Outcome of one CLI run: exit code, parsed JSON lines, raw output."""

    returncode: int
    events: list[dict]
    stdout: str
    stderr: str

    def of_type(self, type_: str, subtype: str | None = None) -> list[dict]:
        return [
            e
            for e in self.events
            if e.get("type") == type_ and (subtype is None or e.get("subtype") == subtype)
        ]

    def first(self, type_: str, subtype: str | None = None) -> dict:
        found = self.of_type(type_, subtype)
        assert found, f"no {type_}/{subtype} event in output:\n{self.stdout}\n{self.stderr}"
        return found[0]


def parse_json_lines(text: str) -> list[dict]:
    """JSON objects, one per line; other lines are skipped (the CLIs may print them)."""
    events = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            events.append(obj)
    return events


def popen_cli(argv: list[str], env: dict[str, str], cwd: str | os.PathLike[str]) -> subprocess.Popen[str]:
    """Start a CLI headless: stdin at /dev/null, output piped, in a session of its own."""
    return subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail at the deadline.

    These tests drive other processes from synchronous code: there is no event to wait on,
    so this is the one bounded poll they all use.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")


def run_cli(
    argv: list[str],
    env: dict[str, str],
    cwd: str | os.PathLike[str],
    timeout: float = 45.0,
) -> CliRun:
    """Run a CLI to completion with stdin at /dev/null (both CLIs need that headless).

    On timeout the whole process tree (tools included) is killed, then TimeoutExpired raised."""
    proc = popen_cli(argv, env, cwd)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(process_tree(proc.pid))
        proc.kill()
        proc.communicate()
        raise
    return CliRun(proc.returncode, parse_json_lines(stdout), stdout, stderr)


def claude_argv(prompt: str, *extra: str, claude: str | None = None) -> list[str]:
    """``claude -p PROMPT --output-format stream-json --verbose EXTRA...``."""
    return [
        claude or find_cli("claude") or "claude",
        "-p",
        prompt,
        "--output-format",
        "stream-json",
        "--verbose",
        *extra,
    ]


def codex_argv(prompt: str, *extra: str, codex: str | None = None) -> list[str]:
    """``codex exec --json --skip-git-repo-check EXTRA... PROMPT``.

    For a resume pass ``"resume", THREAD_ID`` as ``extra`` (they go before the prompt)."""
    return [
        codex or find_cli("codex") or "codex",
        "exec",
        "--json",
        "--skip-git-repo-check",
        *extra,
        "--",
        prompt,
    ]


# --------------------------------------------------------------------------- process trees


def process_tree(pid: int) -> list[psutil.Process]:
    """``pid`` and all its descendants (snapshot; take it BEFORE killing the root, since
    orphans are re-parented and no longer show up as descendants)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """The processes of ``procs`` still running (zombies count as dead)."""
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def kill_tree(procs: list[psutil.Process], timeout: float = 5.0) -> list[psutil.Process]:
    """SIGKILL every process in ``procs`` and every process group they lead (the CLIs run
    their tools in new sessions/groups). Returns the ones still alive after ``timeout``."""
    own_pgid = os.getpgid(0)
    for p in procs:
        try:
            pgid = os.getpgid(p.pid)
            if pgid == p.pid and pgid != own_pgid:
                os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        wait_for(lambda: not alive(procs), timeout)
    except AssertionError:
        pass
    return alive(procs)
