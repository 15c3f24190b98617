"""What the contract suite's tests share: the world they run in and ClosedLoop's exchange."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
from closedloop_double import ClosedLoopApiDouble

from gateway.http.serve import GatewayHandle

WEB_ORIGIN = "https://app.closedloop.ai"
TICKET = "ENG-42"


@dataclass
class World:
    home: Path
    origin_remote: Path
    repo: Path
    worktree: Path
    feature: str

    @property
    def repo_display(self) -> str:
        """The repo as ClosedLoop's ``repos`` lists it (``~/...`` under home)."""
        return "~/" + str(self.repo.relative_to(self.home))


async def exchange(gw: GatewayHandle, cloud: ClosedLoopApiDouble, origin: str = WEB_ORIGIN) -> str:
    """``performExchange`` step 2, with a challenge the cloud double minted for ``origin``."""
    async with httpx.AsyncClient(base_url=f"http://localhost:{gw.port}", trust_env=False) as client:
        answer = await client.post(
            "/gateway-auth/exchange",
            headers={"Content-Type": "application/json", "Origin": origin},
            json={"challengeToken": cloud.mint(origin)},
        )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["sessionToken"])
