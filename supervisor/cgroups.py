"""A cgroup v2 per child, where the gateway may create cgroups: membership without /proc scans,
kills that nothing can escape, resource limits and accounting.

A process group or an environment marker can be left (``setsid``, ``env -i``); a cgroup cannot
be left by an unprivileged process, and everything a member forks is a member. So where cgroup
v2 is writable (as root, or in a systemd unit with ``Delegate=yes``) each child gets
``<own cgroup>/desktop-gateway-<state key>/<record id>``:

- the child joins it before it runs its own code: the argv is prefixed with a tiny ``sh`` that
  writes its own pid to ``cgroup.procs`` and then ``exec``s the real program (a ``preexec_fn``
  would force ``fork`` over ``vfork``, ~40 ms per spawn for a gateway-sized process here);
- the tree is ``cgroup.procs``; a kill is SIGTERM to the members, the grace, then
  ``cgroup.kill`` (which also catches processes forked meanwhile), confirmed by
  ``cgroup.events`` saying ``populated 0``;
- a restarted gateway finds leftovers as the child cgroups still under its subtree;
- a gateway holds a lock file for its subtree while it runs (``lock_dir``), so that the next
  gateway to start can remove the *empty* subtrees of gateways that are gone (SIGKILLed on a
  temporary state dir that nobody reopens), and never one a live gateway uses.

The v2 hierarchy is found from ``/proc/self/mountinfo`` (it may be mounted anywhere; hybrid
systems mount it at ``/sys/fs/cgroup/unified`` beside the v1 controllers). Everything here is
blocking file-system work on cgroupfs (microseconds), except ``EventsWatch``, the one task
that learns of emptied cgroups for every waiting kill.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import re
import signal
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trio

#: Joins the cgroup whose ``cgroup.procs`` is ``$1``, then becomes the real program. ``$$`` is
#: the shell's own pid, which ``exec`` keeps; failing to join is fatal (exit 125), because the
#: kill would not see the child otherwise.
JOIN_SCRIPT = 'echo $$ > "$1" || { echo "gateway: cannot join cgroup $1" >&2; exit 125; }; shift; exec "$@"'

_IN_MODIFY = 0x2
_EVENT = struct.Struct("iIII")
_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

LIMIT_FILES = {"memory_max": "memory.max", "cpu_max": "cpu.max", "pids_max": "pids.max"}
_CONTROLLERS = ("memory", "cpu", "pids")
_CPU_PERIOD = 100_000
PREFIX = "desktop-gateway-"
#: A subtree without a lock file was made by a gateway from before the locks: it is removed
#: only once this old (cgroupfs keeps a directory's creation time as its mtime), since a
#: live gateway of that version cannot say it is alive.
UNLOCKED_AGE = 24 * 3600.0


class CgroupError(ValueError):
    """A request the cgroups here cannot honour (a limit whose controller is not delegated)."""


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo`` octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def find_v2_mount(mountinfo: str) -> tuple[Path, str] | None:
    """(mount point, root of the hierarchy it shows) of the first cgroup2 mount, or None."""
    for line in mountinfo.splitlines():
        pre, sep, post = line.partition(" - ")
        fields = pre.split()
        if sep and post.split()[:1] == ["cgroup2"] and len(fields) >= 5:
            return Path(_unescape(fields[4])), _unescape(fields[3])
    return None


def own_v2_path(proc_cgroup: str) -> str | None:
    """This process's cgroup in the v2 hierarchy (the ``0::`` line of /proc/self/cgroup)."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


def _unavailable(key: str) -> str:
    controller = LIMIT_FILES[key].split(".")[0]
    return f"{LIMIT_FILES[key]}: the {controller} controller is not delegated to the gateway's cgroups"


def _read(path: Path | str) -> str:
    """A small cgroupfs/procfs file; ``os.open``/``os.read``, not ``open()``: the kill path
    reads ``cgroup.procs`` and ``cgroup.events`` per tree, and a buffered text file object
    costs several times the read itself. Read until EOF: a seq_file read returns at most its
    own buffer (a page at first), so a short read is not the end (``cgroup.procs`` of a
    cgroup with a thousand members is longer than that)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return os.fsdecode(b"".join(chunks))
    finally:
        os.close(fd)


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_usec: int | None
    memory_peak: int | None


class Cgroup:
    """One child's cgroup."""

    def __init__(self, path: Path, *, memory: bool = True) -> None:
        self.path = path
        self.memory = memory
        self._procs = str(path / "cgroup.procs")
        self.events_path = str(path / "cgroup.events")

    @property
    def name(self) -> str:
        return self.path.name

    def join_argv(self) -> list[str]:
        """The argv prefix that makes the child a member before its program starts."""
        return ["/bin/sh", "-c", JOIN_SCRIPT, "sh", str(self.path / "cgroup.procs")]

    def procs(self) -> set[int]:
        """The live members (zombies are not listed); empty once the cgroup is gone."""
        try:
            return {int(p) for p in _read(self._procs).split()}
        except OSError:
            return set()

    def populated(self) -> bool:
        try:
            text = _read(self.events_path)
        except FileNotFoundError:
            return False
        return "populated 1" in text

    def signal(self, pids: set[int], sig: int) -> list[int]:
        """``sig`` to each of ``pids``; the ones it reached."""
        reached = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                reached.append(pid)
            except (ProcessLookupError, PermissionError):
                pass
        return reached

    def kill(self) -> bool:
        """SIGKILL every member, including ones being forked right now (``cgroup.kill``).

        Kernels before 5.14 have no ``cgroup.kill``: then each listed member gets SIGKILL,
        and the caller's wait loop repeats it while the cgroup stays populated.
        """
        try:
            _write(self.path / "cgroup.kill", "1")
            return True
        except FileNotFoundError:
            self.signal(self.procs(), signal.SIGKILL)
            return False
        except OSError:
            return False

    def usage(self) -> Usage:
        cpu = peak = None
        try:
            for line in _read(self.path / "cpu.stat").splitlines():
                if line.startswith("usage_usec "):
                    cpu = int(line.split()[1])
        except (OSError, ValueError):
            pass
        # The memory files exist only with the memory controller (not on a hybrid layout).
        names = ("memory.peak", "memory.current") if self.memory else ()
        for name in names:
            try:
                peak = int(_read(self.path / name))
                break
            except (OSError, ValueError):
                continue
        return Usage(cpu, peak)

    def set_limits(self, memory_max: int | None, cpu_max: float | None, pids_max: int | None) -> None:
        """Write the limits asked for; a controller that is not delegated is a clear error."""
        cpu = f"{max(1000, round(cpu_max * _CPU_PERIOD))} {_CPU_PERIOD}" if cpu_max is not None else None
        values = {
            "memory_max": str(memory_max) if memory_max is not None else None,
            "cpu_max": cpu,
            "pids_max": str(pids_max) if pids_max is not None else None,
        }
        for key, value in values.items():
            if value is None:
                continue
            try:
                _write(self.path / LIMIT_FILES[key], value)
            except FileNotFoundError:
                raise CgroupError(_unavailable(key)) from None

    def remove(self) -> bool:
        """Delete the (empty) cgroup; False while it still has members."""
        try:
            os.rmdir(self.path)
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                return False
            raise


class EventsWatch:
    """Wakes waiters when a cgroup's ``cgroup.events`` changes (``populated`` going to 0).

    The kernel reports every change of that file as an inotify modification, so one
    descriptor serves every cgroup: a kill waits on it instead of opening a pidfd per member.
    ``run`` reads the descriptor until cancelled; ``changed`` gives the event the next change
    of a cgroup sets (grab it, then re-check the file, then wait: nothing is missed).
    """

    def __init__(self) -> None:
        if _libc is None:
            raise OSError(errno.ENOSYS, "inotify needs Linux")
        fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd = fd
        self._by_wd: dict[int, trio.Event] = {}
        self._wd: dict[str, int] = {}

    def changed(self, cgroup: Cgroup) -> trio.Event | None:
        """The event the next change of ``cgroup``'s events file sets (watched from now on);
        None once the watch stopped (``run`` ended: the supervisor is being torn down) or the
        file cannot be watched: the caller then waits another way."""
        if self.fd < 0 or _libc is None:
            return None
        wd = self._wd.get(cgroup.events_path)
        if wd is None:
            wd = _libc.inotify_add_watch(self.fd, os.fsencode(cgroup.events_path), _IN_MODIFY)
            if wd < 0:
                return None
            self._wd[cgroup.events_path] = wd
        event = self._by_wd.get(wd)
        if event is None:
            event = self._by_wd[wd] = trio.Event()
        return event

    def forget(self, cgroup: Cgroup) -> None:
        """Stop watching (the cgroup was removed; the kernel dropped the watch with it)."""
        wd = self._wd.pop(cgroup.events_path, None)
        if wd is not None:
            event = self._by_wd.pop(wd, None)
            if event is not None:
                event.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                await trio.lowlevel.wait_readable(self.fd)
                try:
                    data = os.read(self.fd, 65536)
                except BlockingIOError:
                    continue
                offset = 0
                while offset + _EVENT.size <= len(data):
                    wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
                    offset += _EVENT.size + length
                    event = self._by_wd.pop(wd, None)
                    if event is not None:
                        event.set()
        finally:
            fd, self.fd = self.fd, -1
            os.close(fd)
            for event in self._by_wd.values():
                event.set()  # waiters re-check, then wait another way
            self._by_wd.clear()


def lock_dir() -> Path:
    """Where the subtrees' lock files live: the same place for every gateway of this user,
    whatever its environment (a systemd user runtime dir, /run for root, else the temp dir)."""
    uid = os.getuid()
    for where in (Path(f"/run/user/{uid}"), Path("/run") if uid == 0 else None):
        if where is not None and where.is_dir() and os.access(where, os.W_OK):
            return where / "desktop-gateway-cgroups"
    return Path(tempfile.gettempdir()) / f"desktop-gateway-cgroups-{uid}"


def _try_lock(path: Path) -> int | None:
    """An exclusive ``flock`` on ``path`` (created if needed), or None if another holds it.

    A lock file is unlinked by whoever removes a dead gateway's subtree, under its lock: a
    lock taken on a file that was unlinked meanwhile is retried on the new file.
    """
    for _ in range(10):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    return None


class Cgroups:
    """The gateway's subtree ``<own cgroup>/desktop-gateway-<key>``: one cgroup per record."""

    def __init__(self, base: Path, lock_fd: int | None = None) -> None:
        self.base = base
        self._lock_fd = lock_fd
        self.controllers = frozenset(self._read_controllers())

    @classmethod
    def open(cls, key: str) -> Cgroups | None:
        """The subtree for state key ``key``, created if needed; None if cgroup v2 is not
        mounted or not writable here (the engine then keeps its /proc path)."""
        if not sys.platform.startswith("linux"):
            return None
        try:
            mount = find_v2_mount(_read(Path("/proc/self/mountinfo")))
            own = own_v2_path(_read(Path("/proc/self/cgroup")))
        except OSError:
            return None
        if mount is None or own is None:
            return None
        point, root = mount
        if root != "/" and (own == root or own.startswith(root + "/")):
            own = own[len(root) :]
        parent = point / own.lstrip("/")
        base = parent / f"{PREFIX}{key}"
        locks = lock_dir()
        with contextlib.suppress(OSError):
            locks.mkdir(mode=0o700, exist_ok=True)
        lock_fd = _try_lock(locks / f"{key}.lock")  # None: a second gateway on this state dir
        try:
            base.mkdir(exist_ok=True)
        except OSError:
            _unlock(lock_fd)
            return None
        if not os.access(base / "cgroup.procs", os.W_OK):
            _unlock(lock_fd)
            return None
        _enable_controllers(parent, base)
        cgroups = cls(base, lock_fd)
        with contextlib.suppress(OSError):
            cgroups.remove_abandoned()
        return cgroups

    def remove_abandoned(self, *, unlocked_age: float = UNLOCKED_AGE) -> list[str]:
        """Remove the empty subtrees that gateways now gone left beside this one; their names.

        Only ``desktop-gateway-*`` directories beside our own are looked at, and only removed
        when (a) their gateway is gone: its lock file is not held by anyone (a live gateway
        holds it from start to shutdown; a SIGKILLed one's lock went with its process), or
        there is no lock file and the subtree is older than ``unlocked_age``; and (b) they are
        empty: ``rmdir`` of a cgroup with members or child cgroups fails, and then it stays
        (its records' leftovers are for its own gateway's restart sweep).
        """
        removed: list[str] = []
        locks = lock_dir()
        for entry in os.scandir(self.base.parent):
            if not entry.name.startswith(PREFIX) or entry.name == self.base.name:
                continue
            if not entry.is_dir(follow_symlinks=False):
                continue
            lock = locks / f"{entry.name[len(PREFIX):]}.lock"
            if lock.exists():
                fd = _try_lock(lock)
                if fd is None:
                    continue  # its gateway is alive
            else:
                fd = None
                try:
                    if time.time() - entry.stat(follow_symlinks=False).st_mtime < unlocked_age:
                        continue  # perhaps a live gateway from before the lock files
                except OSError:
                    continue
            try:
                os.rmdir(entry.path)
                removed.append(entry.name)
            except OSError:
                pass  # populated or has child cgroups: not ours to decide
            finally:
                if fd is not None:
                    with contextlib.suppress(OSError):
                        lock.unlink()  # under its lock: see ``_try_lock``
                    os.close(fd)
        self._remove_stale_locks(locks)
        return removed

    def _remove_stale_locks(self, locks: Path) -> None:
        """Lock files whose subtree is gone and whose gateway is gone too (nobody holds them)."""
        for entry in os.scandir(locks):
            key = entry.name.removesuffix(".lock")
            if key == entry.name or (self.base.parent / f"{PREFIX}{key}").exists():
                continue
            fd = _try_lock(Path(entry.path))
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                os.close(fd)

    def close(self) -> None:
        """Remove the subtree if it is empty (a clean shutdown); leftovers keep it for the
        next start's sweep. The lock file goes with an empty subtree (else it stays for the
        next gateway to find it unlocked)."""
        for cgroup in self.leftovers().values():
            with contextlib.suppress(OSError):
                cgroup.remove()
        gone = False
        with contextlib.suppress(OSError):
            os.rmdir(self.base)
            gone = True
        if self._lock_fd is not None and gone:
            with contextlib.suppress(OSError):
                (lock_dir() / f"{self.base.name[len(PREFIX):]}.lock").unlink()
        _unlock(self._lock_fd)
        self._lock_fd = None

    def _read_controllers(self) -> list[str]:
        try:
            return _read(self.base / "cgroup.subtree_control").split()
        except OSError:
            return []

    def create(self, name: str) -> Cgroup:
        path = self.base / name
        try:
            path.mkdir(exist_ok=True)
        except FileNotFoundError:
            # Our empty subtree was removed under us (a gateway from before the lock files
            # took it for abandoned, or we run without our lock): make it again.
            self.base.mkdir(exist_ok=True)
            _enable_controllers(None, self.base)
            path.mkdir(exist_ok=True)
        return Cgroup(path, memory="memory" in self.controllers)

    def get(self, name: str) -> Cgroup:
        return Cgroup(self.base / name, memory="memory" in self.controllers)

    def leftovers(self) -> dict[str, Cgroup]:
        """Child cgroups found under the subtree (an earlier gateway's records), by name."""
        try:
            entries = list(os.scandir(self.base))
        except OSError:
            return {}
        return {e.name: Cgroup(Path(e.path)) for e in entries if e.is_dir(follow_symlinks=False)}

    def supports(self, memory_max: int | None, cpu_max: float | None, pids_max: int | None) -> str | None:
        """Why the limits asked for cannot be applied here, or None if they can."""
        for key, value in (("memory_max", memory_max), ("cpu_max", cpu_max), ("pids_max", pids_max)):
            if value is not None and LIMIT_FILES[key].split(".")[0] not in self.controllers:
                return _unavailable(key)
        return None


def _enable_controllers(parent: Path | None, base: Path) -> None:
    """Best effort: controllers for limits and accounting, where the parent delegates them."""
    for where in (parent, base):
        if where is None:
            continue
        for controller in _CONTROLLERS:
            with contextlib.suppress(OSError):
                _write(where / "cgroup.subtree_control", f"+{controller}")


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the last descriptor releases the flock
