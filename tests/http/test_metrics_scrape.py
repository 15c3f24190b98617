"""``/api/gateway/metrics`` as Prometheus reads it: Debian's real ``prometheus`` server scrapes a
running gateway with the gateway token as a bearer token file (it cannot send custom headers)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from gwtest import ServeProcess
from prometheus_client.parser import text_string_to_metric_families

from gateway.supervisor import __version__

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bearer_token_is_accepted_on_metrics_only(serve_process: ServeProcess) -> None:
    url = serve_process.url
    bearer = {"Authorization": f"Bearer {serve_process.token}"}
    scraped = httpx.get(f"{url}/api/gateway/metrics", headers=bearer, trust_env=False)
    assert scraped.status_code == 200
    families = {f.name for f in text_string_to_metric_families(scraped.text)}
    expected = {"process_resident_memory_bytes", "process_open_fds", "python_info", "gateway_build_info"}
    assert expected <= families
    assert 'gateway_build_info{python="' in scraped.text and f'version="{__version__}"' in scraped.text
    # Elsewhere a bearer token is not a credential; a wrong one on /metrics is a bad token.
    assert httpx.get(f"{url}/api/gateway/processes", headers=bearer, trust_env=False).status_code == 401
    wrong = httpx.get(f"{url}/api/gateway/metrics", headers={"Authorization": "Bearer nope"}, trust_env=False)
    assert wrong.status_code == 401 and wrong.json()["error"]["reason"] == "bad_token"


@pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="no prometheus: apt-get install prometheus")
def test_debian_prometheus_scrapes_with_a_bearer_token_file(
    serve_process: ServeProcess, tmp_path: Path
) -> None:
    token_file = tmp_path / "gateway-token"
    token_file.write_text(serve_process.token)
    wrong_file = tmp_path / "wrong-token"
    wrong_file.write_text("not-the-token")
    job = """\
  - job_name: {name}
    metrics_path: /api/gateway/metrics
    authorization:
      type: Bearer
      credentials_file: {credentials}
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
        + job.format(name="gateway", credentials=token_file, port=serve_process.port)
        + job.format(name="wrong", credentials=wrong_file, port=serve_process.port)
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    prom = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        targets: dict[str, dict] = {}
        deadline = time.monotonic() + 60
        while set(targets) != {"gateway", "wrong"} or "unknown" in {t["health"] for t in targets.values()}:
            assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            assert time.monotonic() < deadline, targets
            time.sleep(0.2)  # polling another process's scrape loop, bounded by the deadline
            try:
                active = httpx.get(f"{api}/targets", trust_env=False, timeout=5).json()["data"][
                    "activeTargets"
                ]
            except (httpx.HTTPError, ValueError):
                continue
            targets = {t["labels"]["job"]: t for t in active}
        assert targets["gateway"]["health"] == "up", targets["gateway"]
        assert targets["wrong"]["health"] == "down" and "401" in targets["wrong"]["lastError"]
        query = httpx.get(f"{api}/query", params={"query": "gateway_build_info"}, trust_env=False).json()
        assert query["data"]["result"][0]["metric"]["version"] == __version__
        rss = httpx.get(f"{api}/query", params={"query": "process_resident_memory_bytes"}, trust_env=False)
        assert float(rss.json()["data"]["result"][0]["value"][1]) > 0
    finally:
        prom.terminate()
        prom.wait(30)
        log.close()
