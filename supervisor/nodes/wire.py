"""What the gateway and a node agent say to each other: JSON text messages on one WebSocket.

Requests carry an ``id`` and an ``op``; the answer carries the same ``id`` and ``ok``. A
``follow`` is a subscription: the agent sends ``lines``, ``status`` and finally ``end``
messages under the request's id until the gateway sends ``unfollow`` or the record ended.
Records travel with their raw fields (epoch seconds, not ISO strings) so that the gateway's
copy is exact; specs travel without their callables: teardown hooks and result detectors stay
on the gateway, which runs the hooks itself on teardown and the detector over its mirror of
the log (``client.RemoteNode``), killing with ``result-idle`` as the engine would.

The token goes in the handshake's ``Authorization: Bearer`` header, never in a message.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import fields
from typing import Any

from ..engine import KillReceipt, SignalSent
from ..spec import ProcessRecord, ProcessSpec, RestartPolicy, State, StopReason

#: Biggest message either side accepts (a log batch is cut well below it).
MAX_MESSAGE = 16 * 1024 * 1024
#: A log batch stops growing past this many bytes of text.
BATCH_BYTES = 1024 * 1024
PROTOCOL = 1

_SKIP = {"version"}


def dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _num(value: float) -> float | None:
    return None if value == math.inf else value


def _inf(value: Any) -> float:
    return math.inf if value is None else float(value)


def spec_to_wire(spec: ProcessSpec) -> dict[str, Any]:
    r = spec.restart
    return {
        "argv": list(spec.argv),
        "kind": spec.kind,
        "cwd": spec.cwd,
        "env": dict(spec.env),
        "ticketId": spec.ticket_id,
        "labels": dict(spec.labels),
        "stopGrace": spec.stop_grace,
        "restart": {"mode": r.mode, "maxRestarts": r.max_restarts, "backoff": r.backoff,
                    "maxBackoff": r.max_backoff},
        "stallTimeout": _num(spec.stall_timeout),
        "maxRuntime": _num(spec.max_runtime),
        "resultIdleTimeout": _num(spec.result_idle_timeout),
        "eventParser": spec.event_parser,
        "inheritEnv": spec.inherit_env,
        "memoryMax": spec.memory_max,
        "cpuMax": spec.cpu_max,
        "pidsMax": spec.pids_max,
        "stdin": None if spec.stdin is None else base64.b64encode(spec.stdin).decode("ascii"),
    }  # fmt: skip


def spec_from_wire(data: dict[str, Any]) -> ProcessSpec:
    """A spec from a message; raises ValueError/TypeError/KeyError on a malformed one."""
    r = data.get("restart") or {}
    env = data.get("env") or {}
    labels = data.get("labels") or {}
    if not isinstance(env, dict) or not isinstance(labels, dict):
        raise TypeError("env and labels must be objects")
    argv = data["argv"]
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise TypeError("argv must be a list of strings")
    return ProcessSpec(
        argv=argv,
        kind=str(data.get("kind") or "command"),
        cwd=data.get("cwd"),
        env={str(k): str(v) for k, v in env.items()},
        ticket_id=data.get("ticketId"),
        labels={str(k): str(v) for k, v in labels.items()},
        stop_grace=float(data.get("stopGrace", 5.0)),
        restart=RestartPolicy(
            mode=str(r.get("mode", "never")),
            max_restarts=int(r.get("maxRestarts", 3)),
            backoff=float(r.get("backoff", 1.0)),
            max_backoff=float(r.get("maxBackoff", 30.0)),
        ),
        stall_timeout=_inf(data.get("stallTimeout")),
        max_runtime=_inf(data.get("maxRuntime")),
        result_idle_timeout=_inf(data.get("resultIdleTimeout")),
        event_parser=data.get("eventParser"),
        inherit_env=bool(data.get("inheritEnv", True)),
        memory_max=_opt(int, data.get("memoryMax")),
        cpu_max=_opt(float, data.get("cpuMax")),
        pids_max=_opt(int, data.get("pidsMax")),
        stdin=None if data.get("stdin") is None else base64.b64decode(str(data["stdin"]), validate=True),
    )


def _opt(kind: type[int] | type[float], value: Any) -> Any:
    return None if value is None else kind(value)


def record_to_wire(record: ProcessRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(record):
        if f.name in _SKIP:
            continue
        value = getattr(record, f.name)
        if isinstance(value, State | StopReason):
            value = value.value
        out[f.name] = value
    return out


def apply_record(record: ProcessRecord, data: dict[str, Any], *, keep: frozenset[str] = frozenset()) -> None:
    """Copy a wire record's fields onto ``record`` (all but ``keep`` and the table's own)."""
    for f in fields(record):
        name = f.name
        if name in _SKIP or name in keep or name not in data:
            continue
        value = data[name]
        if name == "state":
            value = State(value)
        elif name == "stop_reason":
            value = StopReason(value) if value else None
        setattr(record, name, value)


def record_from_wire(data: dict[str, Any], node: str) -> ProcessRecord:
    record = ProcessRecord(
        id=str(data["id"]), kind=str(data["kind"]), argv=list(data["argv"]), cwd=data["cwd"]
    )
    apply_record(record, data)
    record.node = node
    return record


def receipt_to_wire(receipt: KillReceipt) -> dict[str, Any]:
    return {
        "process": record_to_wire(receipt.process),
        "signals": [{"signal": s.signal, "at": s.at, "pids": list(s.pids)} for s in receipt.signals],
        "survivors": list(receipt.survivors),
        "elapsedMs": receipt.elapsed_ms,
        "alreadyEnded": receipt.already_ended,
        "method": receipt.method,
    }


def receipt_from_wire(data: dict[str, Any], process: ProcessRecord) -> KillReceipt:
    return KillReceipt(
        process=process,
        signals=[SignalSent(s["signal"], float(s["at"]), list(s["pids"])) for s in data.get("signals", [])],
        survivors=list(data.get("survivors", [])),
        elapsed_ms=int(data.get("elapsedMs", 0)),
        already_ended=bool(data.get("alreadyEnded", False)),
        method=data.get("method"),
    )
