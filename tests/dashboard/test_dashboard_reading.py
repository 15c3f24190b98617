"""Reading what runs, in real Chromium: agent runs as a conversation, ANSI colours, search over
every line held, stream filters, wrapping, the command column, folded helpers, re-sign-in in the
same tab, and approval cards that show what will run."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_harness import Gateway, PageErrors, new_page, python_child, shot
from playwright.sync_api import Browser, Page, expect

from agents import clis
from agents.model_double import ModelDouble


def row(page: Page, process_id: str) -> Any:
    return page.locator(f'tr[data-id="{process_id}"]')


def open_log(page: Page, process_id: str) -> None:
    row(page, process_id).locator("button.link").click()
    expect(page.locator("#detail-title")).to_contain_text(process_id)


def finished(gateway: Gateway, process_id: str) -> None:
    """Block until the process ended (follows its NDJSON log to the end line; no polling)."""
    with gateway.client.stream(
        "GET", f"/api/gateway/processes/{process_id}/logs", params={"follow": "1"}
    ) as r:
        for line in r.iter_lines():
            if '"type":"end"' in line:
                return
    raise AssertionError("log ended without an end line")


@pytest.mark.agents
def test_an_agent_run_reads_as_a_conversation(
    signed_in: Page, gateway: Gateway, artifacts: Path, tmp_path: Path
) -> None:
    claude = clis.find_cli("claude")
    if claude is None:
        pytest.skip("claude CLI not installed: run scripts/install-agent-clis.sh")
    page = signed_in
    with ModelDouble() as md:
        md.claude.bash("echo tool-says-hi; echo olleh-dlrow | rev", "Let me run that.")
        md.claude.reply("Finished: the tool said hi.")
        run = gateway.start(
            clis.claude_argv("say hi through bash", claude=claude),
            cwd=str(tmp_path), env=clis.claude_env(md, tmp_path / "home"), eventParser="claude",
        )  # fmt: skip
        finished(gateway, run["id"])
    open_log(page, run["id"])
    talk = page.locator("#logtalk")
    expect(talk).to_be_visible()
    expect(page.locator("#logview")).to_be_hidden()
    expect(talk.locator(".talk-text").last).to_contain_text("Finished: the tool said hi.")
    tool = talk.locator(".talk-tool").first
    expect(tool).to_contain_text("→ Bash")
    expect(tool.locator(".talk-target")).to_have_text("echo tool-says-hi; echo olleh-dlrow | rev")
    result = talk.locator(".talk-result").first
    expect(result.locator("summary")).to_contain_text("result: tool-says-hi (+")
    expect(result.locator(".talk-output")).to_be_hidden()  # folded until asked
    result.locator("summary").click()
    expect(result.locator(".talk-output")).to_contain_text("world-hello")
    expect(talk.locator(".talk-done")).to_contain_text("✓ done")
    assert '{"type"' not in talk.inner_text()  # no raw stream-json in the conversation
    shot(page, artifacts, "10-agent-conversation")
    # The raw toggle shows the lines as written.
    page.click("#log-mode")
    expect(page.locator("#logview")).to_be_visible()
    expect(page.locator("#loglines")).to_contain_text('{"type":')
    page.click("#log-mode")
    expect(talk).to_be_visible()
    # Search works in the conversation too (inside a folded result: it unfolds).
    expect(result.locator(".talk-output")).to_be_hidden()  # drawn afresh: folded again
    page.fill("#log-search", "world-hello")  # only in the tool's output
    expect(page.locator("#log-search-count")).to_have_text("1 of 1")
    expect(talk.locator(".talk.current .talk-output")).to_be_visible()


def test_ansi_colours_render_as_styled_text_never_html(signed_in: Page, gateway: Gateway) -> None:
    page = signed_in
    code = (
        "print('\\x1b[31mred alert\\x1b[0m plain \\x1b[1;32mbold green\\x1b[0m "
        "\\x1b[38;5;208morange\\x1b[0m')\n"
        "print('<img src=x onerror=alert(1)><b>not bold</b>')\n"
        "print('\\x1b]0;window title\\x07\\x1b[2Kcleared')\n"
    )
    run = gateway.start(python_child(code))
    finished(gateway, run["id"])
    open_log(page, run["id"])
    lines = page.locator("#loglines")
    expect(lines).to_contain_text("red alert plain bold green orange")
    red = lines.locator(".ansi-fg-1")
    expect(red).to_have_text("red alert")
    expect(red).to_have_css("color", "rgb(255, 123, 114)")
    expect(lines.locator(".ansi-bold.ansi-fg-2")).to_have_text("bold green")
    assert lines.locator("span", has_text="orange").last.evaluate("e => e.style.color") == "rgb(255, 135, 0)"
    # Markup in a log is text; escape sequences that are not colours vanish.
    expect(lines).to_contain_text("<img src=x onerror=alert(1)><b>not bold</b>")
    assert lines.locator("img").count() == 0 and lines.locator("b").count() == 0
    expect(lines).to_contain_text("cleared")
    assert "\x1b" not in lines.inner_text() and "[31m" not in lines.inner_text()
    assert "window title" not in lines.inner_text()


def test_search_finds_offscreen_lines_and_the_stream_filter(signed_in: Page, gateway: Gateway) -> None:
    page = signed_in
    code = (
        "import sys\n"
        "for i in range(1, 5001):\n"
        "    print(f'line {i}' + (' needle' if i in (1234, 4321) else ''))\n"
        "    if i % 1000 == 0: print(f'warn {i}', file=sys.stderr)\n"
        "print('x' * 900)\n"
    )
    run = gateway.start(python_child(code))
    finished(gateway, run["id"])
    open_log(page, run["id"])
    expect(page.locator("#log-status")).to_contain_text("ended")
    lines = page.locator("#loglines")
    expect(lines).not_to_contain_text("line 1234 needle")  # far above the window
    assert page.locator("#loglines .logline").count() < 200
    page.fill("#log-search", "NEEDLE")
    expect(page.locator("#log-search-count")).to_have_text("1 of 2")
    current = page.locator("#loglines .logline.current")
    expect(current).to_contain_text("line 1234 needle")
    expect(current.locator("mark")).to_have_text("needle")
    expect(page.locator("#log-follow")).not_to_be_checked()
    page.click("#log-next")
    expect(current).to_contain_text("line 4321 needle")
    expect(page.locator("#log-search-count")).to_have_text("2 of 2")
    page.press("#log-search", "Shift+Enter")
    expect(current).to_contain_text("line 1234 needle")
    # Only stderr: the five warnings.
    page.fill("#log-search", "")
    page.uncheck("#log-show-stdout")
    page.uncheck("#log-show-system")
    expect(page.locator("#log-status")).to_contain_text("5 shown")
    expect(lines).to_contain_text("warn 5000")
    assert page.locator("#loglines .logline").count() == 5
    assert page.locator("#loglines .logline.stderr").count() == 5
    # A long line wraps into whole rows inside the pane (no sideways scroll).
    page.check("#log-show-stdout")
    page.click("#log-end")
    long = page.locator("#loglines .logline", has_text="xxxxxxxx").last
    expect(long).to_be_visible()
    height = long.evaluate("e => e.getBoundingClientRect().height")
    assert height >= 36 and height % 18 == 0, height
    text_box = long.locator(".text").evaluate("e => [e.scrollHeight, e.clientHeight]")
    assert text_box[0] <= text_box[1] + 1, text_box  # every wrapped row fits: nothing clipped
    view = page.locator("#logview").evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert view[0] <= view[1], view


def test_command_column_folded_helpers_and_row_actions_with_a_log_open(
    signed_in: Page, gateway: Gateway, artifacts: Path
) -> None:
    page = signed_in
    # The module's gateway may already hold ended git records (other tests' git calls).
    listing = gateway.api("GET", "/api/gateway/processes", params={"kind": "git"})["processes"]
    before = sum(1 for p in listing if p["endedAt"] is not None)
    helpers = [gateway.start(["true"], kind="git") for _ in range(3)]
    for helper in helpers:
        finished(gateway, helper["id"])
    sleeper = gateway.start(["sleep", "300"])
    try:
        # Default view: live and recent; the ended git helpers fold away behind one click.
        expect(row(page, sleeper["id"])).to_be_visible()
        for helper in helpers:
            expect(row(page, helper["id"])).to_have_count(0)
        expect(page.locator("#processes-folded")).to_contain_text(f"{before + 3} ended helper records")
        cell = row(page, sleeper["id"]).locator("td.command-cell")
        expect(cell).to_have_text("sleep 300")
        # Row actions stay while a log is open (wide screen: table and pane side by side).
        open_log(page, sleeper["id"])
        kill = row(page, sleeper["id"]).get_by_role("button", name=f"Kill {sleeper['id']}")
        expect(kill).to_be_visible()
        box, wrap = kill.bounding_box(), page.locator("#view-processes .table-wrap").bounding_box()
        assert box and wrap and box["x"] + box["width"] <= wrap["x"] + wrap["width"] + 1, (box, wrap)
        expect(
            row(page, sleeper["id"]).get_by_role("button", name=f"Tear down {sleeper['id']}")
        ).to_be_visible()
        shot(page, artifacts, "11-command-column")
        page.click("#processes-show-all")
        for helper in helpers:
            expect(row(page, helper["id"])).to_be_visible()
        expect(row(page, helpers[0]["id"]).locator("td.command-cell")).to_have_text("true")
        # Ages tick while you watch.
        age = row(page, sleeper["id"]).locator("td").nth(6)
        before = age.inner_text()
        expect(age).not_to_have_text(before, timeout=3000)
    finally:
        gateway.api("POST", f"/api/gateway/processes/{sleeper['id']}/kill")
        page.select_option("#filter-state", "recent")


def test_first_visit_then_sign_in_again_in_the_same_tab(
    browser: Browser, gateway: Gateway, page_errors: PageErrors
) -> None:
    page = new_page(browser, page_errors)
    try:
        page.goto(gateway.base + "/")
        expect(page.locator("#signin-title")).to_have_text("Sign in to desktop-gateway")
        expect(page.locator("#signin-help")).to_contain_text("gateway open")
        page.evaluate("window.sameDocument = true")
        # Paste a fresh link into this tab: only the fragment changes, no reload.
        page.evaluate(f"location.hash = 'challenge={gateway.challenge()}'")
        expect(page.locator("#tabs")).to_be_visible()
        assert page.evaluate("window.sameDocument") is True
        assert "challenge" not in page.url
        # The session ends (pushed out by 8 newer ones); a fresh link in the same tab works.
        for _ in range(8):
            httpx.post(
                f"{gateway.base}/gateway-auth/exchange",
                json={"challengeToken": gateway.challenge()},
                headers={"Origin": gateway.base},
            )
        expect(page.locator("#signin-title")).to_have_text("Session expired: run gateway open", timeout=10000)
        page.evaluate(f"location.hash = 'challenge={gateway.challenge()}'")
        expect(page.locator("#tabs")).to_be_visible()
        expect(page.locator("#signin")).to_be_hidden()
        expect(page.locator("#conn")).to_contain_text("live")
        assert page.evaluate("window.sameDocument") is True
    finally:
        page.context.close()
    assert not page_errors, page_errors


def _held_start(gateway: Gateway, body: dict[str, Any], out: dict[str, Any]) -> None:
    with httpx.Client(base_url=gateway.base, timeout=30) as client:
        out["response"] = client.post(
            "/api/gateway/processes", json=body, headers={"X-Desktop-Gateway-Token": gateway.token}
        )


def test_approval_card_shows_what_will_run(
    signed_in: Page, gateway: Gateway, artifacts: Path, tmp_path: Path
) -> None:
    page = signed_in
    page.click("#tab-approvals")
    gateway.set_threshold("gateway", "medium")  # process_control is high: it asks
    body = {
        "argv": python_child("print('deploying')"),
        "cwd": str(tmp_path),
        "env": {"DEPLOY_TOKEN": "very-secret", "REGION": "eu"},
        "ticketId": "T-11",
    }
    out: dict[str, Any] = {}
    caller = threading.Thread(target=_held_start, args=(gateway, body, out))
    try:
        caller.start()
        card = page.locator("#approvals-pending li.approval")
        expect(card).to_have_count(1, timeout=2000)  # pushed over the stream, not polled
        expect(card.locator("h3")).to_contain_text("print('deploying')")
        expect(card.locator('[data-fact="argv"]')).to_contain_text("-u -c")
        expect(card.locator('[data-fact="cwd"]')).to_have_text(str(tmp_path))
        expect(card.locator('[data-fact="env"]')).to_have_text("DEPLOY_TOKEN, REGION")
        expect(card.locator('[data-fact="ticket"]')).to_have_text("T-11")
        expect(card.locator('[data-fact="operation"]')).to_have_text("process_control (high risk)")
        expect(card.locator('[data-fact="principal"]')).to_have_text("gateway")
        assert "very-secret" not in page.content()
        shot(page, artifacts, "12-approval-card")
        card.get_by_role("button", name="Deny", exact=False).first.click()
        caller.join(timeout=15)
        assert out["response"].status_code == 403
        expect(card).to_have_count(0)
        expect(page.locator("#approvals-recent")).to_contain_text("denied")
    finally:
        gateway.set_threshold("gateway", "high")
        caller.join(timeout=15)
