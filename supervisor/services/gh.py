"""The GitHub CLI as supervised short children: the runner the pull-request service (and any other
gh user) shares.

``gh`` runs like git (``worktrees.Git``): a child of kind ``gh`` with an argv list, a maximum run
time (the whole tree is killed when it is exceeded), stdin at /dev/null so it can never prompt,
and the binary looked up at each call (the gateway passes its ``settings/binary-paths``).
Bodies and JSON payloads go through files (``BodyFile``: ``--body-file``, ``gh api --input``)
written in a private temporary directory and removed after the run, so neither a leading ``-``
nor the argv size limit can bite. ``gh`` is always told its host (``github.com``), so a
``GH_HOST`` in the environment cannot redirect a call.

A failed run becomes the shared error family (``classify``): GitHub's refusals are ``Rejected``
in its words (a 422, a GraphQL error), an unknown object ``NotFound``, a missing or
unauthenticated gh ``Unavailable`` naming ``gh`` and the fix, an overrun ``Timeout``;
``details`` carry gh's exit code and GitHub's HTTP status.

Cancellation: ``Gh.run`` awaits its child; cancelling the caller leaves the supervisor to finish
or time out the child, and the body files are removed on the way out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from ..engine import Supervisor
from ..errors import GatewayError, NotFound, Rejected, Timeout, Unavailable, UpstreamFailed
from ..logs import LogLine
from ..spec import ProcessSpec, State, StopReason

#: The only host gh is pointed at (``gh api --hostname``, ``--repo github.com/o/r``).
HOST = "github.com"
#: A gh call's maximum run time; past it the child and its tree are killed (``Timeout``).
GH_TIMEOUT = 60.0

INSTALL_HINT = (
    "install the GitHub CLI (Debian/Ubuntu: apt-get install gh; macOS: brew install gh) or set its "
    'path with PATCH /api/gateway/settings/binary-paths {"gh": "/abs/path/to/gh"}'
)
AUTH_HINT = (
    "the GitHub CLI is not authenticated: run `gh auth login` as the user the gateway runs as, "
    "or set GH_TOKEN in the gateway's environment"
)
_HTTP_STATUS = re.compile(r"\(HTTP (\d{3})\)|HTTP (\d{3}):")
_GH_ENV = {
    "GH_PROMPT_DISABLED": "1",
    "GH_NO_UPDATE_NOTIFIER": "1",
    "GH_SPINNER_DISABLED": "1",
    "GH_PAGER": "cat",
    "NO_COLOR": "1",
    "CLICOLOR": "0",
    "GIT_TERMINAL_PROMPT": "0",
}


def unauthenticated(details: Mapping[str, Any]) -> Unavailable:
    """gh has no usable credentials: say how to give it some."""
    err = Unavailable(AUTH_HINT, "gh", code="gh_unauthenticated")
    err.details.update(details)
    return err


@dataclass(frozen=True, slots=True)
class BodyFile:
    """An argv slot for a file ``Gh.run`` writes (a body or a JSON payload) and removes after."""

    name: str


BODY = BodyFile("body.md")
PAYLOAD = BodyFile("payload.json")


@dataclass(slots=True)
class GhResult:
    code: int | None
    stdout: str
    stderr: str
    record_id: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    def json_lines(self) -> list[Any]:
        """stdout as NDJSON (what ``--jq`` prints): one value per non-empty line."""
        try:
            return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise UpstreamFailed(f"gh printed output that is not JSON: {exc}", code="gh_bad_output") from None


def classify(result: GhResult, what: str) -> GatewayError:
    """A failed gh run as the answer the client gets (GitHub's own words where it gave some)."""
    said = (result.stderr or result.stdout).strip()
    text = said.lower()
    details: dict[str, Any] = {"exitCode": result.code}
    statuses = [int(a or b) for a, b in _HTTP_STATUS.findall(said)]
    if statuses:
        details["githubStatus"] = statuses[-1]
    if result.code == 4 or "gh auth login" in text or "bad credentials" in text or 401 in statuses:
        return unauthenticated(details)
    message = rest_error(result.stdout) or github_message(said) or f"{what} failed"
    if 422 in statuses:
        return Rejected(message, code="github_unprocessable", details=details)
    if 404 in statuses or "could not resolve to a" in text or "no pull requests found" in text:
        return NotFound(message, code="github_not_found", details=details)
    if "GraphQL: " in said:  # e.g. "pull request create failed: GraphQL: No commits between ..."
        return Rejected(message, code="github_unprocessable", details=details)
    return UpstreamFailed(f"{what} failed: {message}", code="gh_failed", details=details)


def rest_error(stdout: str) -> str | None:
    """GitHub's REST error body (``gh api`` prints it on stdout): its message and error items."""
    try:
        body = json.loads(stdout)
    except (json.JSONDecodeError, ValueError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return None
    items = []
    for item in body.get("errors") or []:
        if isinstance(item, str):
            items.append(item)
        elif isinstance(item, dict) and isinstance(item.get("message"), str):
            items.append(item["message"])
        elif isinstance(item, dict):
            items.append(f"{item.get('resource')}.{item.get('field')} is {item.get('code')}")
    return (f"{body['message']}: {'; '.join(items)}" if items else body["message"])[:2000]


def github_message(said: str) -> str:
    """gh's stderr without its decoration: ``gh: Validation Failed (HTTP 422)`` -> the reason."""
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    out = []
    for line in lines:
        line = re.sub(r"^gh: ", "", line)
        line = re.sub(r"^.*?GraphQL: ", "", line)
        line = _HTTP_STATUS.sub("", line).strip()
        if line:
            out.append(line)
    return "; ".join(out)[:2000]


class Gh:
    """Runs ``gh`` as supervised short children (kind ``gh``)."""

    def __init__(
        self,
        sup: Supervisor,
        which: Callable[[str], str | None] = shutil.which,
        timeout: float = GH_TIMEOUT,
    ) -> None:
        self.sup = sup
        self._which = which
        self.timeout = timeout

    def exe(self) -> str:
        path = self._which("gh")
        if path is None:
            message = f"gh (the GitHub CLI) is not installed: {INSTALL_HINT}"
            raise Unavailable(message, "gh", code="gh_missing")
        return path

    async def run(
        self,
        args: list[str | BodyFile],
        cwd: Path,
        *,
        files: Mapping[str, str] | None = None,
        ticket_id: str | None = None,
    ) -> GhResult:
        """Run ``gh <args>``; a ``BodyFile`` in ``args`` becomes the path of that file of ``files``.

        Raises ``Unavailable`` when gh is missing, ``Timeout`` when it overran its time (it is
        killed), ``UpstreamFailed`` when something else stopped it; any exit code is returned.
        """
        exe = self.exe()
        tmp = await trio.to_thread.run_sync(tempfile.mkdtemp, "", "gh-")
        try:
            paths = {}
            for name, content in (files or {}).items():
                paths[name] = os.path.join(tmp, name)
                await trio.to_thread.run_sync(_write_private, paths[name], content)
            argv = [exe, *(paths[a.name] if isinstance(a, BodyFile) else a for a in args)]
            spec = ProcessSpec(
                argv=argv,
                kind="gh",
                cwd=str(cwd),
                ticket_id=ticket_id,
                env=_GH_ENV,
                max_runtime=self.timeout,
                stop_grace=2.0,
            )
            try:
                record = await self.sup.start(spec)
            except OSError as exc:
                raise Unavailable(
                    f"cannot run {exe}: {exc.strerror or exc}; {INSTALL_HINT}", "gh", code="gh_missing"
                ) from None
            final = await self.sup.wait(record.id)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log = self.sup.log(record.id)
        out, err = _joined(log.read(), log.limits.max_line)
        if final.state not in (State.EXITED, State.FAILED) or final.exit_code is None:
            what = " ".join(str(a) for a in args[:2])
            if final.stop_reason is StopReason.TIMEOUT:
                message = f"gh {what} did not finish within {self.timeout:g} s (killed)"
                raise Timeout(message, code="gh_timeout", details={"processId": record.id})
            reason = final.stop_reason.value if final.stop_reason else final.state.value
            raise UpstreamFailed(
                f"gh {what} was stopped ({reason})", code="gh_failed", details={"processId": record.id}
            )
        return GhResult(final.exit_code, out, err, record.id)

    async def call(self, args: list[str | BodyFile], cwd: Path, what: str, **kw: Any) -> GhResult:
        """``run``, with a failure turned into its error (``classify``)."""
        result = await self.run(args, cwd, **kw)
        if not result.ok:
            raise classify(result, what)
        return result


def _write_private(path: str, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(content)


def _joined(lines: list[LogLine], max_line: int) -> tuple[str, str]:
    """stdout and stderr text; lines the log cut at ``max_line`` bytes are glued back.

    The log splits a line longer than ``max_line`` into pieces of exactly that size, so a piece
    of that size continues on the next line (a JSON answer must not gain a newline).
    """
    parts: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    cut: dict[str, bool] = {"stdout": False, "stderr": False}
    for line in lines:
        if line.stream not in parts:
            continue
        bucket = parts[line.stream]
        if cut[line.stream] and bucket:
            bucket[-1] += line.raw
        else:
            bucket.append(line.raw)
        cut[line.stream] = len(line.raw) == max_line
    out, err = (b"\n".join(parts[name]).decode("utf-8", "replace") for name in ("stdout", "stderr"))
    return out, err


def api_args(path: str, *rest: str | BodyFile) -> list[str | BodyFile]:
    """``gh api`` on github.com itself (``--hostname``: a ``GH_HOST`` cannot redirect it)."""
    return ["api", "--hostname", HOST, path, *rest]


def one_json(result: GhResult) -> Any:
    """stdout as one JSON value (what ``--json`` prints)."""
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise UpstreamFailed(f"gh printed output that is not JSON: {exc}", code="gh_bad_output") from None
