"""Request telemetry: the operation ID in a context variable, Prometheus metrics, access log.

The guard (``gateway.http.guard``) sets ``operation_var``; a logging filter copies it onto every log
record, so any line logged while serving a request names its operation without the code that
logs having to know. Metrics live in a per-app registry (several gateways in one test process
must not share counters); engine figures are read at scrape time by a custom collector.
"""

from __future__ import annotations

import bisect
import contextvars
import json
import logging
import platform
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.supervisor import Supervisor

operation_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("gateway_operation", default=None)
principal_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("gateway_principal", default=None)

access_log = logging.getLogger("gateway.access")


def current_operation() -> str | None:
    return operation_var.get()


class OperationFilter(logging.Filter):
    """Adds ``operation`` and ``principal`` to every record (``None`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.operation = operation_var.get()
        record.principal = principal_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what a log shipper or ``jq`` reads without a grammar."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "operation": getattr(record, "operation", None),
            "principal": getattr(record, "principal", None),
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class HumanFormatter(logging.Formatter):
    """``12:04:31 info  gateway: listening on ...``: for a person watching a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        name = record.name.removeprefix("gateway.") if record.name != "gateway" else "gateway"
        line = f"{stamp} {record.levelname.lower():<7} {name}: {record.getMessage()}"
        operation = getattr(record, "operation", None)
        if operation:
            line += f" [{operation}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


_access_stream: TextIO | None = None
_access_human = False

HYPERCORN_LOGGER = "gateway.hypercorn"


def configure_logging(
    level: int = logging.INFO, *, access: bool = True, human: bool = False
) -> logging.Logger:
    """The gateway's log on stderr: human lines (a terminal) or JSON lines (anything else).

    Every logger under ``gateway`` shares one handler, Hypercorn's own error log included
    (``serve`` hands it ``HYPERCORN_LOGGER``). The access log bypasses ``logging`` and writes
    its line straight to stderr: going through LogRecord, filters and a formatter for every
    request cost a quarter of the gateway's throughput on small answers
    (``benchmarks/bench_http.py``). ``access=False`` drops it. Returns the ``gateway``
    logger, which the CLI's ``serve`` uses for its own lines.
    """
    global _access_stream, _access_human
    handler = logging.StreamHandler()
    handler.setFormatter(HumanFormatter() if human else JsonFormatter())
    handler.addFilter(OperationFilter())
    root = logging.getLogger("gateway")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    access_log.setLevel(logging.INFO if access and level <= logging.INFO else logging.WARNING)
    _access_stream = handler.stream if access and level <= logging.INFO else None
    _access_human = human
    return root


class _EngineCollector(Collector):
    """Processes by kind and state, lines and bytes ingested: read live at scrape time."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    def collect(self) -> Iterator[Any]:
        procs = GaugeMetricFamily(
            "gateway_processes", "Process table records by kind and state", labels=["kind", "state"]
        )
        for (kind, state), n in sorted(self.sup.table.counts().items()):
            procs.add_metric([kind, state], n)
        yield procs
        lines = CounterMetricFamily("gateway_log_lines_ingested", "Log lines ingested")
        lines.add_metric([], self.sup.lines_ingested)
        yield lines
        data = CounterMetricFamily("gateway_log_bytes_ingested", "Log bytes ingested")
        data.add_metric([], self.sup.bytes_ingested)
        yield data


_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _RequestCollector(Collector):
    """Request counts and latencies, counted in plain dicts and rendered at scrape time.

    prometheus_client's own Counter/Histogram take a lock and build label keys on every
    observation: on the event loop, a single-threaded hot path, that cost about 8 % of the
    throughput on small answers. Here an observation is two dict updates and a bisect.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str, str], int] = {}
        # operation -> (bucket counts, one per bound plus +Inf; sum of seconds)
        self.latency: dict[str, tuple[list[int], list[float]]] = {}

    def observe(self, labels: tuple[str, str, str, str], seconds: float) -> None:
        self.requests[labels] = self.requests.get(labels, 0) + 1
        entry = self.latency.get(labels[0])
        if entry is None:
            entry = self.latency[labels[0]] = ([0] * (len(_LATENCY_BUCKETS) + 1), [0.0])
        entry[0][bisect.bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        entry[1][0] += seconds

    def collect(self) -> Iterator[Any]:
        requests = CounterMetricFamily(
            "gateway_requests",
            "HTTP requests by operation, principal, method and status",
            labels=["operation", "principal", "method", "status"],
        )
        for labels, n in sorted(self.requests.items()):
            requests.add_metric(list(labels), n)
        yield requests
        latency = HistogramMetricFamily(
            "gateway_request_duration_seconds",
            "Time to response headers, by operation",
            labels=["operation"],
        )
        for operation, (counts, total) in sorted(self.latency.items()):
            cumulative, buckets = 0, []
            for bound, n in zip((*(str(float(b)) for b in _LATENCY_BUCKETS), "+Inf"), counts, strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            latency.add_metric([operation], buckets, sum_value=total[0])
        yield latency


class Metrics:
    def __init__(self, sup: Supervisor, version: str = "unknown") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = _RequestCollector()
        self.registry.register(self._requests)
        self.approvals = Counter(
            "gateway_approvals",
            "Held requests by outcome",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self.registry.register(_EngineCollector(sup))
        # The usual process_* (CPU, memory, fds, start time), python_info and python_gc_*
        # series, so stock dashboards and alerts work; and which build answers.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        build = Info("gateway_build", "The gateway's version and Python", registry=self.registry)
        build.info({"version": version, "python": platform.python_version()})

    def observe(
        self, operation: str | None, principal: str | None, method: str, status: int, seconds: float
    ) -> None:
        self._requests.observe((operation or "none", principal or "anonymous", method, str(status)), seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def log_access(
    *,
    method: str,
    path: str,
    status: int,
    seconds: float,
    operation: str | None,
    principal: str | None,
    remote: str | None,
) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    if _access_stream is not None:
        now = time.time()
        if _access_human:
            stamp = time.strftime("%H:%M:%S", time.localtime(now))
            ms = seconds * 1000
            _access_stream.write(f"{stamp} {'info':<7} access: {method} {path} {status} {ms:.1f}ms\n")
            return
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z",
            "level": "info",
            "logger": access_log.name,
            "operation": operation,
            "principal": principal,
            "msg": f"{method} {path} {status}",
            "method": method,
            "path": path,
            "status": status,
            "durationMs": round(seconds * 1000, 3),
            "remote": remote,
        }
        _access_stream.write(json.dumps(line) + "\n")
        return
    access_log.info(
        "%s %s %s",
        method,
        path,
        status,
        extra={
            "fields": {
                "method": method,
                "path": path,
                "status": status,
                "durationMs": round(seconds * 1000, 3),
                "remote": remote,
                "operation": operation,
                "principal": principal,
            }
        },
    )
