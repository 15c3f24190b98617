"""``gateway service``: the systemd user unit it writes, checked by systemd itself where present."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest
from gwtest import GATEWAY_BIN

from gateway.http.service import DRAIN, TIMEOUT_STOP, quote, render_unit


def gw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GATEWAY_BIN, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def read_unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def test_install_status_uninstall_write_a_unit_that_stops_in_order(tmp_path: Path) -> None:
    units = tmp_path / "units"
    state = tmp_path / "my state"  # a space: ExecStart must quote it
    assert gw("service", "status", "--unit-dir", str(units)).returncode == 3
    done = gw(
        "service",
        "install",
        "--no-enable",
        "--unit-dir",
        str(units),
        "--state-dir",
        str(state),
        "--port",
        "19555",
    )
    assert done.returncode == 0, done.stderr
    path = units / "desktop-gateway.service"
    unit = read_unit(path)
    service = unit["Service"]
    assert service["KillMode"] == "mixed" and service["Delegate"] == "yes"
    assert int(service["TimeoutStopSec"]) == TIMEOUT_STOP > 5 + DRAIN
    assert service["ExecStart"] == (
        f'{GATEWAY_BIN} serve --state-dir "{state}" --log-format human --port 19555'
    )
    assert unit["Install"]["WantedBy"] == "default.target"
    assert "journalctl --user -u desktop-gateway" in gw("service", "status", "--unit-dir", str(units)).stdout
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True, timeout=60
        )
        assert verify.returncode == 0, verify.stderr
        assert "desktop-gateway.service" not in verify.stderr, verify.stderr  # no warning about our unit
    removed = gw("service", "uninstall", "--no-enable", "--unit-dir", str(units))
    assert removed.returncode == 0 and not path.exists()


def test_path_carries_the_agent_clis_and_odd_characters_are_escaped(tmp_path: Path) -> None:
    text = render_unit(tmp_path / "100% $HOME", None, "/opt/tools/bin:/usr/bin")
    assert 'Environment="PATH=/opt/tools/bin:/usr/bin"' in text
    assert quote("/a b/100%") == '"/a b/100%%"' and quote("$x") == "$$x"
    if shutil.which("systemd-analyze"):
        path = tmp_path / "desktop-gateway.service"
        path.write_text(text)
        verify = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True, timeout=60
        )
        assert verify.returncode == 0, verify.stderr


@pytest.mark.skipif(not Path(".tools/node/node_modules/.bin").is_dir(), reason="make agents has not run")
def test_service_path_finds_the_agent_clis() -> None:
    from gateway.http.service import service_path_env

    first = service_path_env().split(":")[0]
    assert first.endswith(".tools/node/node_modules/.bin") and (Path(first) / "claude").exists()
