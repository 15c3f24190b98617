"""``gateway service install|uninstall|status``: run the gateway at login as a systemd user unit.

The unit runs ``gateway serve`` in the foreground, the way systemd wants it. What matters:

- ``KillMode=mixed``: on stop, systemd sends SIGTERM to the gateway alone, so the gateway's own
  ordered shutdown runs (stop accepting, end streams, kill every child tree with its grace);
  only what is left after ``TimeoutStopSec`` gets SIGKILL from systemd.
- ``TimeoutStopSec`` is above the children's stop grace plus Hypercorn's drain, with a margin,
  so systemd never cuts the gateway's teardown short.
- ``Delegate=yes``: systemd hands the service its own cgroup subtree and leaves what the
  gateway starts inside it alone.
- ``PATH`` is the installing shell's, plus the agent CLIs ``make agents`` installed into this
  checkout's ``.tools/``: a user unit otherwise starts with systemd's bare PATH and would not
  find ``claude``, ``codex`` or ``git``.

Logs go to the journal: ``journalctl --user -u desktop-gateway -f``. Linux with systemd only;
elsewhere ``install`` writes nothing and says so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

UNIT_NAME = "desktop-gateway.service"
DEFAULT_STOP_GRACE = 5.0  # ProcessSpec.stop_grace: SIGTERM to SIGKILL per child tree
DRAIN = 5.0  # serve.GRACEFUL_TIMEOUT: Hypercorn's drain of open requests
MARGIN = 20.0
TIMEOUT_STOP = int(DEFAULT_STOP_GRACE + DRAIN + MARGIN)


def unit_dir(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def quote(arg: str) -> str:
    """One ExecStart word: ``%`` and ``$`` escaped, quoted when it has spaces or quotes."""
    text = arg.replace("%", "%%").replace("$", "$$")
    if any(c in text for c in " \t\"'\\;"):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def env_value(value: str) -> str:
    """An ``Environment=`` assignment, quoted as a whole (systemd.exec: "VAR=value")."""
    return '"' + value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"') + '"'


def agent_bin_dir() -> Path | None:
    """``.tools/node/node_modules/.bin`` of the checkout this gateway runs from, if it exists."""
    here = Path(__file__).resolve().parent.parent
    candidate = here / ".tools" / "node" / "node_modules" / ".bin"
    return candidate if candidate.is_dir() else None


def gateway_executable() -> list[str]:
    """The ``gateway`` script beside this interpreter, else ``python -m gateway``."""
    script = Path(sys.executable).with_name("gateway")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "gateway"]


def render_unit(state_dir: Path, port: int | None, path_env: str) -> str:
    argv = [*gateway_executable(), "serve", "--state-dir", str(state_dir), "--log-format", "human"]
    if port is not None:
        argv += ["--port", str(port)]
    exec_start = " ".join(quote(a) for a in argv)
    return f"""\
# Written by `gateway service install`; `gateway service uninstall` removes it.
[Unit]
Description=desktop-gateway: a process supervisor for local AI coding loops
After=network.target

[Service]
Type=exec
ExecStart={exec_start}
Environment={env_value("PATH=" + path_env)}
Environment={env_value("GATEWAY_STATE_DIR=" + str(state_dir))}
# SIGTERM to the gateway only: it stops its children itself, in order, with their grace.
KillMode=mixed
KillSignal=SIGTERM
# Above the children's stop grace ({DEFAULT_STOP_GRACE:g} s) plus the HTTP drain ({DRAIN:g} s).
TimeoutStopSec={TIMEOUT_STOP}
Delegate=yes
Restart=on-failure
RestartSec=2

[Install]
WantedBy=default.target
"""


def service_path_env() -> str:
    first = [str(p) for p in (agent_bin_dir(), Path(sys.executable).parent) if p is not None]
    rest = os.environ.get("PATH", os.defpath).split(os.pathsep)
    return os.pathsep.join(dict.fromkeys(p for p in [*first, *rest] if p))  # in order, once each


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemctl", "--user", *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def install(args: argparse.Namespace) -> int:
    from gateway.http.cli_client import CliError, state_root

    if not sys.platform.startswith("linux"):
        raise CliError(f"gateway service needs Linux with systemd (this is {sys.platform})")
    target = unit_dir(args.unit_dir) / UNIT_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_unit(state_root(args.state_dir), args.port, service_path_env()))
    print(f"wrote {target}")
    if args.no_enable:
        print(f"enable it with: systemctl --user daemon-reload && systemctl --user enable --now {UNIT_NAME}")
        return 0
    if shutil.which("systemctl") is None:
        raise CliError(f"no systemctl on PATH: the unit is written, but nothing can start it ({target})")
    for step in (("daemon-reload",), ("enable", "--now", UNIT_NAME)):
        done = systemctl(*step)
        if done.returncode != 0:
            raise CliError(
                f"systemctl --user {' '.join(step)} failed: {done.stderr.strip() or done.stdout.strip()} "
                "(is there a user session bus? `loginctl enable-linger $USER` starts one at boot)"
            )
    print(f"enabled and started; logs: journalctl --user -u {UNIT_NAME.removesuffix('.service')} -f")
    return 0


def uninstall(args: argparse.Namespace) -> int:
    target = unit_dir(args.unit_dir) / UNIT_NAME
    if not args.no_enable and shutil.which("systemctl") is not None:
        systemctl("disable", "--now", UNIT_NAME)  # not enabled is fine: the file goes either way
    if target.exists():
        target.unlink()
        print(f"removed {target}")
    else:
        print(f"nothing to remove: no {target}")
    if not args.no_enable and shutil.which("systemctl") is not None:
        systemctl("daemon-reload")
    return 0


def status(args: argparse.Namespace) -> int:
    target = unit_dir(args.unit_dir) / UNIT_NAME
    if not target.exists():
        print(f"not installed (no {target}); gateway service install writes it")
        return 3
    print(f"unit: {target}")
    if shutil.which("systemctl") is not None:
        for question in ("is-enabled", "is-active"):
            done = systemctl(question, UNIT_NAME)
            print(
                f"{question.removeprefix('is-')}: {done.stdout.strip() or done.stderr.strip() or 'unknown'}"
            )
    print(f"logs: journalctl --user -u {UNIT_NAME.removesuffix('.service')} -f")
    return 0


def service_command(args: argparse.Namespace) -> int:
    return {"install": install, "uninstall": uninstall, "status": status}[args.action](args)
