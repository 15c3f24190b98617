"""Platform-specific process-tree handling: marking, finding, signalling and reaping.

A process group is not enough to stop an agent: the real ``claude`` CLI runs its Bash tool in a
*new session*, and a SIGKILL to claude orphans that shell under init. So every child carries an
environment marker naming its record id (descendants inherit it, as in Jenkins'
ProcessTreeKiller), the gateway makes itself a child subreaper so orphans re-parent to it, and a
tree is found as the union of: the marker, the descendants by parent pid, and the root's process
group. Everything Linux-specific lives here so that another platform only replaces this module.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

MARKER_VAR = "DESKTOP_GATEWAY_PROCESS"
"""Environment variable set on every child; its value is the child's record id."""

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36

_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def become_subreaper() -> bool:
    """Make this process adopt orphaned descendants, so none escapes to init unreaped."""
    if _libc is None:
        return False
    return _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def make_child_setup(parent_pid: int) -> object:
    """Return a ``preexec_fn`` that ties the child's life to the gateway's.

    PR_SET_PDEATHSIG fires when the *thread* that forked exits, so callers must fork from a
    thread that lives as long as the supervisor (the event loop's thread), never from a worker
    of trio's thread cache. The parent check closes the race where the gateway died before
    prctl ran.
    """
    libc = _libc

    def setup() -> None:
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(137)

    return setup


def start_time(pid: int) -> float | None:
    """Creation time of ``pid``, used to tell a recorded process from a reused pid."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return None


def _read_marker(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return None
    key = MARKER_VAR.encode() + b"="
    for item in data.split(b"\0"):
        if item.startswith(key):
            return item[len(key) :].decode(errors="replace")
    return None


@dataclass(frozen=True, slots=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    status: str


class Snapshot:
    """One pass over /proc: pid, parent, group and state of every visible process.

    Taking one costs a read per process, so concurrent kills share a snapshot (see
    ``TreeScanner`` in the engine) instead of each walking /proc on its own.
    """

    def __init__(self) -> None:
        self.procs: dict[int, ProcInfo] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    raw = f.read()
            except OSError:
                continue
            # comm may contain spaces and parentheses: split after the last ')'.
            rest = raw[raw.rfind(b")") + 2 :].split()
            try:
                self.procs[int(name)] = ProcInfo(
                    pid=int(name), ppid=int(rest[1]), pgid=int(rest[2]), status=rest[0].decode()
                )
            except (IndexError, ValueError):
                continue
        self._children: dict[int, list[int]] | None = None

    def children(self, pid: int) -> list[int]:
        if self._children is None:
            self._children = {}
            for info in self.procs.values():
                self._children.setdefault(info.ppid, []).append(info.pid)
        return self._children.get(pid, [])

    def live(self, pid: int) -> bool:
        info = self.procs.get(pid)
        return info is not None and info.status not in ("Z", "X")


def find_tree(snap: Snapshot, marker: str, root_pid: int | None, *, full_scan: bool = False) -> set[int]:
    """Every live process of record ``marker``'s tree, as seen in ``snap``.

    While the gateway is a subreaper every descendant reaches it by parent pids, so only
    processes adopted by the gateway (``ppid`` = gateway) need their marker read; ``full_scan``
    reads every process's marker, for start-up recovery after a crashed gateway.
    """
    me = os.getpid()
    members: set[int] = set()
    if root_pid is not None and root_pid in snap.procs:
        members.add(root_pid)
    for info in snap.procs.values():
        if info.pid == me or info.pid in members:
            continue
        if (root_pid is not None and info.pgid == root_pid) or (
            (full_scan or info.ppid == me) and _read_marker(info.pid) == marker
        ):
            members.add(info.pid)
    stack = list(members)
    while stack:
        for child in snap.children(stack.pop()):
            if child not in members and child != me:
                members.add(child)
                stack.append(child)
    return {pid for pid in members if snap.live(pid)}


def find_marked(markers: Iterable[str]) -> dict[str, set[int]]:
    """Live processes carrying any of ``markers``: used at start-up to find a crashed run's trees."""
    wanted = set(markers)
    found: dict[str, set[int]] = {}
    if not wanted:
        return found
    me = os.getpid()
    for pid in Snapshot().procs:
        if pid == me or not alive(pid):
            continue
        marker = _read_marker(pid)
        if marker in wanted:
            found.setdefault(marker, set()).add(pid)
    return found


def signal_pids(pids: Iterable[int], sig: int, group: int | None = None) -> list[int]:
    """Send ``sig`` to the group (if any) and every pid; return the pids it reached."""
    if group is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
    reached = []
    for pid in pids:
        try:
            os.kill(pid, sig)
            reached.append(pid)
        except (ProcessLookupError, PermissionError):
            pass
    return reached


def reap_adopted(snap: Snapshot, known: set[int]) -> list[int]:
    """Reap zombies adopted as subreaper, but only pids seen as members of an engine tree.

    Other zombie children of this process may belong to code that waits on them itself (a
    ``subprocess.run`` elsewhere in the program): reaping those would steal their exit status.
    """
    reaped = []
    me = os.getpid()
    for pid in list(known):
        info = snap.procs.get(pid)
        if info is None:
            known.discard(pid)
            continue
        if info.ppid != me or info.status != "Z":
            continue
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped.append(pid)
                known.discard(pid)
        except ChildProcessError:
            known.discard(pid)
    return reaped


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return False
    state = raw[raw.rfind(b")") + 2 : raw.rfind(b")") + 3]
    return state not in (b"Z", b"X")
