"""Request metrics are counted in plain dicts and rendered in Prometheus' text format."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.http.telemetry import Metrics
from gateway.supervisor import open_supervisor


async def test_request_counts_and_latency_histogram_render_as_prometheus(tmp_path: Path) -> None:
    async with open_supervisor(tmp_path / "state") as sup:
        metrics = Metrics(sup)
        metrics.observe("health_check", None, "GET", 200, 0.0004)
        metrics.observe("health_check", None, "GET", 200, 0.003)
        metrics.observe("symphony_launch", "session", "POST", 409, 20.0)
        families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    requests = {
        (s.labels["operation"], s.labels["principal"], s.labels["status"]): s.value
        for s in families["gateway_requests"].samples
        if s.name == "gateway_requests_total"
    }
    assert requests == {("health_check", "anonymous", "200"): 2, ("symphony_launch", "session", "409"): 1}
    buckets = {
        s.labels["le"]: s.value
        for s in families["gateway_request_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["operation"] == "health_check"
    }
    assert buckets["0.001"] == 1 and buckets["0.0025"] == 1 and buckets["0.005"] == 2
    assert buckets["+Inf"] == 2
    launch = [
        s for s in families["gateway_request_duration_seconds"].samples
        if s.labels.get("operation") == "symphony_launch"
    ]  # fmt: skip
    assert {s.labels.get("le"): s.value for s in launch if s.name.endswith("_bucket")}["10.0"] == 0
    assert next(s.value for s in launch if s.name.endswith("_sum")) == 20.0
    assert "gateway_processes" in families
