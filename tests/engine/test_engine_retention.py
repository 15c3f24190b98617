"""Retention: capped kinds keep only their newest ended records, logs and database rows
included; uncapped kinds and recent records are never dropped."""

from __future__ import annotations

from pathlib import Path

from gateway.supervisor import ProcessSpec, SupervisorConfig, open_supervisor


def log_files(state_dir: Path, record_id: str) -> list[Path]:
    return sorted((state_dir / "logs").glob(f"{record_id}.*.log"))


async def run(sup, kind: str) -> str:  # type: ignore[no-untyped-def]
    record = await sup.start(ProcessSpec(["echo", f"a {kind} helper"], kind=kind))
    await sup.wait(record.id)
    return record.id


async def test_capped_kind_keeps_its_newest_records_with_their_logs(state_dir: Path) -> None:
    config = SupervisorConfig(state_dir, keep_ended={"git": 3}, keep_grace=0.0)
    async with open_supervisor(config) as sup:
        kept_forever = await run(sup, "command")
        ids = [await run(sup, "git") for _ in range(6)]
        old, new = ids[:3], ids[3:]
        assert [r.id for r in sup.table.query(kind="git")] == new
        assert sup.table.get(kept_forever) is not None
        for record_id in old:
            assert log_files(state_dir, record_id) == []
            try:
                sup.log(record_id)
            except KeyError:
                pass
            else:
                raise AssertionError(f"{record_id} still has a log")
        for record_id in new:
            assert log_files(state_dir, record_id)
            assert sup.log(record_id).read()[0].text == "a git helper"
    # The database forgot them too: a restarted supervisor loads only what was kept.
    async with open_supervisor(config) as sup:
        assert {r.id for r in sup.table.records.values()} == {kept_forever, *new}


async def test_recent_records_stay_and_a_restart_applies_the_cap(state_dir: Path) -> None:
    async with open_supervisor(SupervisorConfig(state_dir, keep_ended={"git": 2})) as sup:
        ids = [await run(sup, "git") for _ in range(5)]
        # All ended within the grace (60 s): a caller may still be reading any of them.
        assert len(sup.table.query(kind="git")) == 5
    # Started again past the grace (none here), the cap applies at once, files included.
    async with open_supervisor(SupervisorConfig(state_dir, keep_ended={"git": 2}, keep_grace=0.0)) as sup:
        assert [r.id for r in sup.table.query(kind="git")] == ids[3:]
        assert all(log_files(state_dir, i) == [] for i in ids[:3])
        assert all(log_files(state_dir, i) for i in ids[3:])
