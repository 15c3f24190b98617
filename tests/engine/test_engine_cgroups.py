"""A cgroup v2 per child: membership before the child's own code runs, kills nothing escapes
(``env -i setsid`` included, also across a crash of the gateway), accounting and limits.

These need a writable cgroup v2 hierarchy (root, or a delegated systemd unit) and skip, saying
so, where there is none. The /proc path they replace is covered by ``test_engine_kill.py``,
which runs every kill test both ways.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import trio

from gateway.supervisor import ProcessSpec, State, open_supervisor
from gateway.supervisor.cgroups import (
    PREFIX,
    UNLOCKED_AGE,
    CgroupError,
    Cgroups,
    find_v2_mount,
    lock_dir,
    own_v2_path,
)
from gateway.supervisor.proctree import MARKER_VAR, state_key

from support import config, wait_until

# A grandchild that drops the marker (env -i), leaves the session (setsid) and ignores SIGTERM:
# invisible to the /proc sweep of a restarted gateway.
ESCAPER = 'env -i setsid sh -c \'trap "" TERM; echo escaped; exec sleep 600\' & echo started; wait'


def _probe() -> str | None:
    cgroups = Cgroups.open("pytest-probe")
    if cgroups is None:
        return "cgroup v2 is not mounted or not writable for this user (no delegation)"
    cgroups.close()
    return None


NO_CGROUPS = _probe()
needs_cgroups = pytest.mark.skipif(NO_CGROUPS is not None, reason=str(NO_CGROUPS))


def test_the_v2_mount_is_found_in_a_hybrid_layout() -> None:
    mountinfo = (
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    )
    assert find_v2_mount(mountinfo) == (Path("/sys/fs/cgroup/unified"), "/")
    escaped = "41 31 0:38 /sub /mnt/with\\040space rw - cgroup2 cgroup2 rw\n"
    assert find_v2_mount(escaped) == (Path("/mnt/with space"), "/sub")
    assert find_v2_mount("35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n") is None
    assert own_v2_path("4:memory:/x\n0::/user.slice/gw.service\n") == "/user.slice/gw.service"


@needs_cgroups
async def test_every_member_is_in_the_cgroup_and_the_kill_leaves_nothing(state_dir: Path) -> None:
    async with open_supervisor(state_dir) as sup:
        assert sup.cgroups is not None
        record = await sup.start(ProcessSpec(["sh", "-c", ESCAPER], stop_grace=0.3))
        assert record.kill_method == "cgroup"
        cgroup = sup.cgroups.get(record.id)
        log = sup.log(record.id)
        await wait_until(lambda: {"started", "escaped"} <= {line.text for line in log.read()})
        members = cgroup.procs()
        assert record.pid in members  # the root joined before its own code ran
        assert len(members) == 2  # the root shell, and the escaped sleep
        assert any(MARKER_VAR not in psutil.Process(p).environ() for p in members), "the env -i one"

        receipt = await sup.kill(record.id)

        assert receipt.method == "cgroup" and receipt.survivors == []
        assert [s.signal for s in receipt.signals] == ["SIGTERM", "SIGKILL"]  # one ignored TERM
        assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in members)
        assert not cgroup.path.exists(), "an emptied cgroup is removed"
        assert receipt.process.to_json()["killMethod"] == "cgroup"
    assert not sup.cgroups.base.exists(), "a clean shutdown leaves no subtree behind"


@needs_cgroups
async def test_a_kill_right_after_the_start_still_gets_the_child(state_dir: Path) -> None:
    """The child joins from its ``sh`` prefix, a moment after the spawn returned."""
    async with open_supervisor(state_dir) as sup:
        records = [await sup.start(ProcessSpec(["sleep", "600"], stop_grace=0.5)) for _ in range(20)]
        receipts = [await sup.kill(r.id) for r in records]
        assert all(r.survivors == [] and r.process.state is State.KILLED for r in receipts)
        assert not any(psutil.pid_exists(r.pid) and psutil.Process(r.pid).status() != "zombie"
                       for r in records if r.pid)  # fmt: skip


# Honours SIGTERM, in three sessions, one member without the environment: bench_peers' tree.
HARD = 'sleep 600 & setsid sh -c "sleep 600 & wait" & env -i setsid sleep 600 & wait'
# Ignores SIGTERM in a session of its own: only the end of the grace and cgroup.kill stop it.
STUBBORN = 'setsid sh -c \'trap "" TERM; echo stubborn; exec sleep 600\' & wait'


@needs_cgroups
async def test_a_bulk_kill_signals_every_tree_at_once_and_honours_the_grace(state_dir: Path) -> None:
    """``kill_many`` sends every tree's SIGTERM in one pass; each child's task then finishes
    its own kill: the stubborn tree is SIGKILLed only once its grace is over."""
    grace = 1.0
    async with open_supervisor(state_dir) as sup:
        assert sup.cgroups is not None
        hard = [await sup.start(ProcessSpec(["sh", "-c", HARD], stop_grace=grace)) for _ in range(10)]
        stubborn = await sup.start(ProcessSpec(["sh", "-c", STUBBORN], stop_grace=grace))
        ended = await sup.start(ProcessSpec(["true"]))
        await sup.wait(ended.id)
        groups = {r.id: sup.cgroups.get(r.id) for r in [*hard, stubborn]}
        await wait_until(lambda: all(len(groups[r.id].procs()) == 5 for r in hard), what="the trees")
        log = sup.log(stubborn.id)
        await wait_until(lambda: "stubborn" in {line.text for line in log.read()}, what="the trap")
        members = {rid: g.procs() for rid, g in groups.items()}

        began = trio.current_time()
        receipts = await sup.kill_many([*(r.id for r in hard), stubborn.id, ended.id])
        took = trio.current_time() - began

        assert [r.process.id for r in receipts] == [*(r.id for r in hard), stubborn.id, ended.id]
        for receipt in receipts[:-2]:
            assert receipt.method == "cgroup" and receipt.survivors == []
            assert [s.signal for s in receipt.signals] == ["SIGTERM"]  # each honoured it
            # Every pid signalled was a member (under load one of the five was once already gone
            # when the SIGTERM went out, so "every member" is not asserted: survivors are, above).
            assert set(receipt.signals[0].pids) <= members[receipt.process.id]
            assert len(receipt.signals[0].pids) >= 4
            assert receipt.process.state is State.KILLED and receipt.elapsed_ms < grace * 1000
        term = receipts[-2]
        assert [s.signal for s in term.signals] == ["SIGTERM", "SIGKILL"] and term.survivors == []
        assert term.elapsed_ms >= grace * 1000, "SIGKILL only after the grace"
        assert grace <= took < grace + 5
        assert receipts[-1].already_ended
        for rid, pids in members.items():
            assert not groups[rid].path.exists(), "each emptied cgroup is removed"
            assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)
        # Adopted members are reaped by the kill, not left as zombies for the periodic reaper.
        mine = [c for c in psutil.Process().children() if c.pid in set().union(*members.values())]
        assert mine == []
        assert "SIGTERM sent to" in "".join(line.text for line in sup.log(hard[0].id).read())


@needs_cgroups
async def test_cpu_use_is_recorded_from_the_cgroup(state_dir: Path) -> None:
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
    async with open_supervisor(state_dir) as sup:
        record = await sup.start(ProcessSpec([sys.executable, "-c", burn]))
        ended = await sup.wait(record.id)
        assert ended.state is State.EXITED
        assert ended.cpu_usec is not None and ended.cpu_usec >= 250_000
    async with open_supervisor(state_dir) as sup:  # persisted with the record
        again = sup.table.get(record.id)
        assert again is not None and again.cpu_usec == ended.cpu_usec and again.kill_method == "cgroup"


@needs_cgroups
async def test_limits_need_their_controller(state_dir: Path) -> None:
    async with open_supervisor(state_dir) as sup:
        assert sup.cgroups is not None
        if "pids" not in sup.cgroups.controllers:
            with pytest.raises(CgroupError, match="pids controller"):
                await sup.start(ProcessSpec(["sleep", "600"], pids_max=10))
            assert not sup.table.records, "a refused start leaves no record"
            pytest.skip("the pids controller is not delegated to cgroup v2 here (hybrid layout)")
        record = await sup.start(ProcessSpec(["sleep", "600"], pids_max=10, memory_max=64 << 20))
        limit = (sup.cgroups.get(record.id).path / "pids.max").read_text().strip()
        assert limit == "10"
        await sup.kill(record.id)


async def test_without_cgroups_the_proc_path_is_used_and_said(state_dir: Path) -> None:
    async with open_supervisor(config(state_dir, cgroups=False)) as sup:
        assert sup.cgroups is None
        record = await sup.start(ProcessSpec(["sleep", "600"], stop_grace=0.5))
        assert record.kill_method == "proc"
        receipt = await sup.kill(record.id)
        assert receipt.method == "proc" and receipt.survivors == []
        with pytest.raises(CgroupError, match="cgroup v2"):
            await sup.start(ProcessSpec(["sleep", "600"], memory_max=1 << 30))


def _escaped(pids: set[int]) -> list[int]:
    """The members running ``sleep`` without the gateway's marker (the tree is complete)."""
    found = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.cmdline()[:1] == ["sleep"] and MARKER_VAR not in proc.environ():
                found.append(pid)
        except psutil.NoSuchProcess:
            continue
    return found


ENGINE = """
import sys, trio
from gateway.supervisor import open_supervisor, ProcessSpec

async def main():
    async with open_supervisor(sys.argv[1]) as sup:
        record = await sup.start(ProcessSpec(["sh", "-c", sys.argv[2]]))
        print(record.id, flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


@needs_cgroups
async def test_the_restart_sweep_kills_by_cgroup_what_left_marker_and_session(state_dir: Path) -> None:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", ENGINE, str(state_dir), ESCAPER], stdout=-1
    )
    cgroups = Cgroups.open(state_key(str(state_dir)))
    assert cgroups is not None
    try:
        assert proc.stdout is not None
        with trio.fail_after(20):
            record_id = (await proc.stdout.receive_some(200)).decode().strip()
        cgroup = cgroups.get(record_id)
        await wait_until(lambda: len(_escaped(cgroup.procs())) == 1, what="the escaper to run")
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    try:
        # The parent-death signal takes the root; the escaped grandchild lives on, unmarked.
        await wait_until(lambda: len(cgroup.procs()) == 1, what="direct child to die")
        (escaped,) = cgroup.procs()
        assert MARKER_VAR not in psutil.Process(escaped).environ()

        async with open_supervisor(state_dir) as sup:
            record = sup.table.get(record_id)
            assert record is not None and record.state is State.LOST
            receipt = next(r for r in sup.recovered if r.process.id == record_id)
            assert receipt.method == "cgroup" and receipt.survivors == []
            assert escaped in receipt.signals[0].pids
            assert not psutil.pid_exists(escaped) or psutil.Process(escaped).status() == "zombie"
            assert not cgroup.path.exists()
    finally:  # a failed assertion must not leave the escaped sleep behind
        if cgroup.path.exists():
            cgroup.kill()
            await wait_until(lambda: not cgroup.populated(), what="cleanup")
            cgroup.remove()
            cgroups.close()


async def test_a_supervisor_cancelled_from_outside_still_kills_and_ends(state_dir: Path) -> None:
    """Cancelled as a whole (a test's nursery, a crashed sibling), the supervisor's watch of
    cgroup.events ends first; the children's own clean-up must still kill and finish."""
    with trio.fail_after(30):
        with trio.CancelScope() as scope:
            async with open_supervisor(state_dir) as sup:
                records = [await sup.start(ProcessSpec(["sleep", "600"], stop_grace=0.5)) for _ in range(3)]
                scope.cancel()
                await trio.sleep_forever()
    for record in records:
        assert record.pid is not None
        assert not psutil.pid_exists(record.pid) or psutil.Process(record.pid).status() == "zombie"
        assert record.state is State.KILLED
    assert sup.cgroups is not None and not sup.cgroups.base.exists(), "nothing left in cgroupfs"


@needs_cgroups
def test_start_up_removes_only_the_empty_subtrees_of_gateways_that_are_gone() -> None:
    """A SIGKILLed gateway on a temporary state dir leaves ``desktop-gateway-<key>`` behind
    for good; the next gateway to start removes it if it is empty and its owner is gone."""
    tag = secrets.token_hex(4)
    live = Cgroups.open(f"pytest-live-{tag}")  # holds its lock, empty
    assert live is not None
    parent, locks = live.base.parent, lock_dir()
    dead = parent / f"{PREFIX}pytest-dead-{tag}"  # its lock file is there, held by no one
    busy = parent / f"{PREFIX}pytest-busy-{tag}"  # dead too, but a record's cgroup is left
    old = parent / f"{PREFIX}pytest-old-{tag}"  # no lock file (before the locks), a day old
    young = parent / f"{PREFIX}pytest-young-{tag}"  # no lock file, just made: maybe alive
    other = parent / f"pytest-not-ours-{tag}"
    made = [dead, busy, busy / "p_left", old, young, other]
    for path in made:
        path.mkdir()
    (locks / f"pytest-dead-{tag}.lock").touch()
    (locks / f"pytest-busy-{tag}.lock").touch()
    (locks / f"pytest-gone-{tag}.lock").touch()  # its subtree went some other way
    os.utime(old, (time.time() - UNLOCKED_AGE - 60,) * 2)
    try:
        sweeper = Cgroups.open(f"pytest-sweeper-{tag}")
        assert sweeper is not None
        assert live.base.is_dir(), "a live gateway's subtree stays, even empty"
        assert not dead.exists() and not (locks / f"pytest-dead-{tag}.lock").exists()
        assert not old.exists()
        assert busy.is_dir() and (busy / "p_left").is_dir(), "a subtree with a cgroup in it stays"
        assert young.is_dir() and other.is_dir()
        assert not (locks / f"pytest-gone-{tag}.lock").exists(), "a stale lock file goes"
        assert (locks / f"pytest-live-{tag}.lock").exists(), "a live gateway's lock stays"
        # The live one's subtree, had it been taken anyway, comes back when it needs it.
        os.rmdir(live.base)
        assert live.create("p_next").path.is_dir()
        os.rmdir(live.base / "p_next")
        sweeper.close()
        assert not sweeper.base.exists() and not (locks / f"pytest-sweeper-{tag}.lock").exists()
    finally:
        live.close()
        for path in reversed(made):
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(path)
        (locks / f"pytest-busy-{tag}.lock").unlink(missing_ok=True)
        (locks / f"pytest-gone-{tag}.lock").unlink(missing_ok=True)
    assert not live.base.exists()


@needs_cgroups
async def test_the_members_of_a_big_cgroup_are_all_listed() -> None:
    """``cgroup.procs`` longer than a page comes in several reads: all of them are taken (a
    single read returns one page: ~680 pids)."""
    cgroups = Cgroups.open(f"pytest-big-{secrets.token_hex(3)}")
    assert cgroups is not None
    group = cgroups.create("big")
    many = 'for i in $(seq 1500); do sleep 600 & done; echo up; wait'
    proc = await trio.lowlevel.open_process([*group.join_argv(), "sh", "-c", many], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        with trio.fail_after(60):
            assert (await proc.stdout.receive_some(16)).startswith(b"up")
        members = group.procs()
        assert len(members) == 1501 and proc.pid in members
        assert len((group.path / "cgroup.procs").read_bytes()) > 4096  # longer than a page
    finally:
        group.kill()
        with trio.fail_after(30):
            await proc.wait()
            while group.populated():
                await trio.sleep(0.01)
        group.remove()
        cgroups.close()
