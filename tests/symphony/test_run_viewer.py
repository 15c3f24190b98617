"""``run-viewer-extract`` over real HTTP: a real claude run's events saved, read, listed, deleted."""

from __future__ import annotations

import httpx
from symphony_support import API, wait_for

from agents.model_double import Bash, ModelDouble, Text

URL = "/api/gateway/run-viewer-extract"


async def test_extract_read_list_and_delete_a_run(api: httpx.AsyncClient, md: ModelDouble) -> None:
    md.claude.add_turn(Text("Writing the file."), Bash("echo hi > hi.txt"))
    md.claude.reply("Done.")
    r = await api.post(f"{API}/launch", json={"ticketId": "V-1", "repoId": "r1", "prompt": "write hi"})
    run_id = r.json()["process"]["id"]
    await wait_for(api, "V-1", lambda s: s["runs"][-1]["state"] == "exited")

    made = await api.post(URL, json={"processId": run_id})
    assert made.status_code == 201, made.text
    summary = made.json()
    assert summary["ticketId"] == "V-1" and summary["provider"] == "claude" and summary["tools"] == ["Bash"]
    assert summary["counts"]["toolCalls"] == 1 and summary["summary"] == "Done."
    doc = (await api.get(URL, params={"processId": run_id})).json()
    assert any(e["type"] == "tool_use" and "echo hi" in str(e["input"]) for e in doc["events"])
    assert [run["processId"] for run in (await api.get(URL)).json()["runs"]] == [run_id]
    assert (await api.request("DELETE", URL, params={"processId": run_id})).json()["deleted"] is True
    assert (await api.get(URL, params={"processId": run_id})).status_code == 404


async def test_run_viewer_refusals(api: httpx.AsyncClient) -> None:
    plain = (await api.post("/api/gateway/processes", json={"argv": ["true"]})).json()["id"]
    not_agent = await api.post(URL, json={"processId": plain})
    assert not_agent.status_code == 400 and not_agent.json()["operation"] == "filesystem"
    assert (await api.post(URL, json={"processId": "../../gateway-token"})).status_code == 404
    assert (await api.post(URL, json={})).status_code == 400
    assert (await api.request("DELETE", URL)).status_code == 400
