"""Dev-server deploys of a work tree: detect how it runs, start it supervised on a free
port, probe it, read its URL and errors from its log, kill it or tear it down.

A deploy is a record of kind ``deploy`` (restart on failure, ``PORT`` set). The process table
is the registry: a ticket's deploy is its newest ``deploy`` record unless torn down, so a
restarted gateway knows its deploys and nothing has to be kept in step with the table.

What runs comes from the work tree (``package.json`` scripts, a ``Procfile``'s ``web`` line,
``manage.py``) or from the request as an argv list. A Procfile line is a shell command by
definition (Heroku runs it with ``sh -c``); it comes from the repository, never from a
request. Probes only ever reach a deploy's own loopback URL: a request cannot aim them.

A deploy may run on a node (``node``; without it the configured default, ``local`` unless
set): the work tree must exist there at the same path, and the port is chosen and checked on
this machine, so on another machine the server answers on that node's loopback, not here.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine import Supervisor
from ..errors import BadRequest, Conflict
from ..spec import ACTIVE_STATES, ProcessRecord, ProcessSpec, RestartPolicy

KIND = "deploy"
#: package.json scripts, most to least likely to be "the dev server".
SCRIPT_ORDER = ("dev", "start", "serve", "preview")
_URL = re.compile(r"https?://(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1?\])(?::(\d{2,5}))?[^\s\"'<>]*")
_ERROR = re.compile(r"\b(error|exception|traceback|failed|eaddrinuse|cannot find module)\b", re.I)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One way to run the work tree; ``argv`` may hold ``{port}``, filled in at start."""

    source: str
    name: str
    argv: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "name": self.name, "argv": list(self.argv)}


def detect(root: Path) -> list[Candidate]:
    """Every way found to run ``root``, best first (blocking: run it in a thread)."""
    found: list[Candidate] = []
    pkg = root / "package.json"
    if pkg.is_file():
        try:
            scripts = json.loads(pkg.read_text(encoding="utf-8")).get("scripts") or {}
        except (ValueError, OSError, AttributeError):
            scripts = {}
        if isinstance(scripts, dict):
            names = [s for s in SCRIPT_ORDER if isinstance(scripts.get(s), str)]
            found += [Candidate("package.json", s, ("npm", "run", s)) for s in names]
    procfile = root / "Procfile"
    if procfile.is_file():
        for line in procfile.read_text(encoding="utf-8", errors="replace").splitlines():
            name, sep, command = line.partition(":")
            if sep and name.strip() == "web" and command.strip():
                found.append(Candidate("Procfile", "web", ("sh", "-c", command.strip())))
                break
    if (root / "manage.py").is_file():
        found.append(
            Candidate("manage.py", "runserver", ("python3", "manage.py", "runserver", "127.0.0.1:{port}"))
        )
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def extract_info(lines: list[str], port: int | None) -> dict[str, Any]:
    """The URL a dev server announced (else its own port's), and its recent error lines."""
    url = None
    for text in lines:
        for match in _URL.finditer(text):
            url = match.group(0).rstrip(".,;)")
            if match.group(1):
                port = int(match.group(1))
    if url is None and port is not None:
        url = f"http://127.0.0.1:{port}"
    errors = [t for t in lines if _ERROR.search(t) and not t.startswith("[gateway]")][-20:]
    return {"url": url, "port": port, "errors": errors}


class Deploys:
    """The deploy family's operations on the supervisor's table."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    def current(self, ticket_id: str) -> ProcessRecord | None:
        """The ticket's deploy: its newest ``deploy`` record, unless that one was torn down
        (a teardown forgets the deploy; older records are history, not deploys)."""
        recs = [r for r in self.sup.table.records.values() if r.kind == KIND and r.ticket_id == ticket_id]
        newest = max(recs, key=lambda r: (r.started_at or 0.0, r.id), default=None)
        return None if newest is None or newest.torn_down else newest

    def active(self, ticket_id: str) -> ProcessRecord | None:
        record = self.current(ticket_id)
        return record if record is not None and record.state in ACTIVE_STATES else None

    async def start(
        self,
        ticket_id: str,
        root: Path,
        candidate: Candidate,
        port: int | None,
        *,
        max_restarts: int = 3,
        labels: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        node: str | None = None,
    ) -> ProcessRecord:
        """Start the ticket's deploy on ``node`` (``Placement.choose``: None is the default)."""
        where = self.sup.placement.choose(node)
        existing = self.active(ticket_id)
        if existing is not None:
            raise Conflict(f"ticket {ticket_id} already has a running deploy ({existing.id})")
        if port is None:
            port = free_port()
        elif not port_free(port):
            raise Conflict(f"port: {port} is in use")
        argv = [a.replace("{port}", str(port)) for a in candidate.argv]
        url = f"http://{host}:{port}"
        spec = ProcessSpec(
            argv=argv,
            kind=KIND,
            cwd=str(root),
            ticket_id=ticket_id,
            env={"PORT": str(port), "HOST": "127.0.0.1", "BROWSER": "none"},
            labels={
                "port": str(port),
                "url": url,
                "source": f"{candidate.source}:{candidate.name}",
                **(labels or {}),
            },
            restart=RestartPolicy("on-failure", max_restarts=max_restarts, backoff=1.0, max_backoff=10.0),
            stop_grace=5.0,
        )
        try:
            return await self.sup.start(spec, node=where)
        except OSError as exc:
            raise BadRequest(f"command: cannot start {argv[0]}: {exc.strerror or exc}") from None

    def current_deploys(self) -> list[ProcessRecord]:
        """Every ticket's current deploy (not torn down)."""
        tickets = {r.ticket_id for r in self.sup.table.records.values() if r.kind == KIND and r.ticket_id}
        return [r for r in (self.current(t) for t in tickets if t) if r is not None]

    def of_worktree(self, worktree: Path) -> ProcessRecord | None:
        """The current deploy started in ``worktree`` (the ``worktreePath`` label), if any."""
        found = [r for r in self.current_deploys() if r.labels.get("worktreePath") == str(worktree)]
        return max(found, key=lambda r: (r.started_at or 0.0, r.id), default=None)

    def of_pid(self, pid: int) -> ProcessRecord | None:
        """The current deploy whose process is ``pid``: the only pids a deploy route signals."""
        return next((r for r in self.current_deploys() if r.pid == pid), None)

    def log_text(self, record: ProcessRecord, max_lines: int = 2000) -> str:
        log = self.sup.log(record.id)
        return "\n".join(line.text for line in log.read(max(log.last_seq - max_lines, 0)))
