"""Platform-specific process-tree handling: marking, finding, signalling and reaping.

A process group is not enough to stop an agent: the real ``claude`` CLI runs its Bash tool in a
*new session*, and a SIGKILL to claude orphans that shell under init. So every child carries an
environment marker naming its record id (descendants inherit it, as in Jenkins'
ProcessTreeKiller), the gateway makes itself a child subreaper so orphans re-parent to it, and a
tree is found as the union of: the marker, the descendants by parent pid, and the root's process
group. Everything Linux-specific lives here so that another platform only replaces this module.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass

MARKER_VAR = "DESKTOP_GATEWAY_PROCESS"
"""Environment variable set on every child: ``<record id>@<state key>``.

The state key names the gateway's state dir, so a restarted gateway can find every leftover of
*its* predecessor (even one whose record never reached the database) without touching the
children of another gateway that runs with a different state dir.
"""


def state_key(state_dir: str) -> str:
    import hashlib

    return hashlib.sha256(os.fsencode(os.path.realpath(state_dir))).hexdigest()[:12]


def marker_for(record_id: str, key: str) -> str:
    return f"{record_id}@{key}"


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


def pdeathsig_prefix() -> list[str]:
    """An argv prefix that sets PR_SET_PDEATHSIG in the child, if util-linux's setpriv exists.

    A ``preexec_fn`` forces ``fork`` (every page table of the gateway copied, ~5 ms) where
    CPython otherwise uses ``vfork``; exec'ing through setpriv keeps spawning cheap. The signal
    survives the exec into the real program.
    """
    path = shutil.which("setpriv")
    if path is None or not sys.platform.startswith("linux"):
        return []
    return [path, "--pdeathsig", "KILL", "--"]


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
    """Start time of ``pid`` in clock ticks since boot: with the pid, a process's identity.

    A recorded pid only counts as the same process if this matches, so a reused pid is never
    signalled.
    """
    fields = _stat_fields(pid)
    try:
        return float(fields[19]) if fields is not None else None
    except (IndexError, ValueError):
        return None


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None if gone.

    The command name may hold spaces and parentheses, so the split starts after the last ')'.
    """
    # os.open/os.read, not open(): no buffered file object per read. A /proc scan is one of
    # these per process, on the kill path, and this is ~40% cheaper (benchmarks/bench_engine.py).
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    return raw[raw.rfind(b")") + 2 :].split()


def _info(pid: int, fields: list[bytes] | None) -> ProcInfo | None:
    if fields is None:
        return None
    try:
        return ProcInfo(pid=pid, ppid=int(fields[1]), pgid=int(fields[2]), status=fields[0].decode())
    except (IndexError, ValueError):
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
            if name.isdigit():
                info = read_stat(int(name))
                if info is not None:
                    self.procs[info.pid] = info
        self._children: dict[int, list[int]] | None = None
        self._groups: dict[int, list[int]] | None = None
        self._markers: dict[int, str | None] = {}
        self._adopted: dict[str, list[int]] | None = None

    def group(self, pgid: int) -> list[int]:
        if self._groups is None:
            self._groups = {}
            for info in self.procs.values():
                self._groups.setdefault(info.pgid, []).append(info.pid)
        return self._groups.get(pgid, [])

    def adopted(self, exclude: set[int] | frozenset[int]) -> dict[str, list[int]]:
        """Children of this process not in ``exclude``, by marker; computed once per snapshot.

        ``exclude`` must be the same set for every call on one snapshot (the engine's roots).
        """
        if self._adopted is None:
            self._adopted = {}
            for pid in self.children(os.getpid()):
                if pid not in exclude:
                    marker = self.marker(pid)
                    if marker is not None:
                        self._adopted.setdefault(marker, []).append(pid)
        return self._adopted

    def marker(self, pid: int) -> str | None:
        """The process's marker, read at most once per snapshot (environ reads are costly)."""
        if pid not in self._markers:
            self._markers[pid] = _read_marker(pid)
        return self._markers[pid]

    def children(self, pid: int) -> list[int]:
        if self._children is None:
            self._children = {}
            for info in self.procs.values():
                self._children.setdefault(info.ppid, []).append(info.pid)
        return self._children.get(pid, [])

    def live(self, pid: int) -> bool:
        info = self.procs.get(pid)
        return info is not None and info.status not in ("Z", "X")


def find_tree(
    snap: Snapshot,
    marker: str,
    root_pid: int | None,
    *,
    exclude: set[int] | frozenset[int] = frozenset(),
    full_scan: bool = False,
) -> set[int]:
    """Every live process of record ``marker``'s tree, as seen in ``snap``.

    While the gateway is a subreaper every descendant reaches it by parent pids, so only
    processes adopted by the gateway (``ppid`` = gateway, minus ``exclude``: the roots of other
    records) need their marker read; ``full_scan`` reads every process's marker.
    """
    me = os.getpid()
    members: set[int] = set()
    if root_pid is not None:
        if root_pid in snap.procs:
            members.add(root_pid)
        members.update(snap.group(root_pid))
    if full_scan:
        members.update(pid for pid in snap.procs if pid != me and snap.marker(pid) == marker)
    else:
        members.update(snap.adopted(exclude).get(marker, ()))
    stack = list(members)
    while stack:
        for child in snap.children(stack.pop()):
            if child not in members and child != me:
                members.add(child)
                stack.append(child)
    members.discard(me)
    return {pid for pid in members if snap.live(pid)}


def find_marked(key: str) -> dict[str, set[int]]:
    """Live processes whose marker carries state key ``key``, by record id (start-up sweep)."""
    found: dict[str, set[int]] = {}
    me = os.getpid()
    suffix = "@" + key
    for pid in Snapshot().procs:
        if pid == me or not alive(pid):
            continue
        marker = _read_marker(pid)
        if marker is not None and marker.endswith(suffix):
            found.setdefault(marker[: -len(suffix)], set()).add(pid)
    return found


def signal_pids(
    pids: Iterable[int], sig: int, group: int | None = None, snap: Snapshot | None = None
) -> list[int]:
    """Send ``sig`` to the group (if any) and every pid; return the pids it reached.

    With ``snap``, members the snapshot places in ``group`` count as reached by the one
    ``killpg`` and are not signalled again: on a kill of many trees, the redundant per-pid
    ``kill`` calls cost as much as the group signals themselves. (A member that leaves the
    group between the snapshot and the ``killpg`` misses this signal; the kill loop's rescans
    still find it, and it gets SIGKILL when the grace ends.)
    """
    grouped = False
    if group is not None:
        try:
            os.killpg(group, sig)
            grouped = True
        except (ProcessLookupError, PermissionError):
            pass
    reached = []
    for pid in pids:
        if grouped and snap is not None:
            info = snap.procs.get(pid)
            if info is not None and info.pgid == group:
                reached.append(pid)
                continue
        try:
            os.kill(pid, sig)
            reached.append(pid)
        except (ProcessLookupError, PermissionError):
            pass
    return reached


def read_stat(pid: int) -> ProcInfo | None:
    """Parent, group and state of one process, or None once it is gone (and reaped)."""
    return _info(pid, _stat_fields(pid))


def reap_adopted(known: set[int]) -> list[int]:
    """Reap zombies adopted as subreaper, but only pids seen as members of an engine tree.

    Other zombie children of this process may belong to code that waits on them itself (a
    ``subprocess.run`` elsewhere in the program): reaping those would steal their exit status.
    ``waitpid(WNOHANG)`` first: on a bulk kill nearly every pid is an adopted zombie, reaped
    without reading its stat; only a pid that is not our child (yet: its parent may die later
    and leave it to us) costs a stat read, to drop it from ``known`` once it is gone.
    """
    reaped = []
    for pid in list(known):
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped.append(pid)
                known.discard(pid)
            continue  # reaped, or a live child of ours
        except ChildProcessError:
            pass
        if read_stat(pid) is None:
            known.discard(pid)
    return reaped


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    info = read_stat(pid)
    return info is not None and info.status not in ("Z", "X")
