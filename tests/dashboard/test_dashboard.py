"""The dashboard in real headless Chromium against a live ``gateway serve``."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

import httpx
import psutil
from dashboard_harness import Gateway, PageErrors, is_gone, new_page, python_child, shot, sign_in
from playwright.sync_api import Browser, Page, expect

# A child that starts a grandchild in its own session (a process group kill would miss it),
# then echoes each line written into a FIFO.
ECHO_CHILD = """
import os, subprocess, sys
g = subprocess.Popen(["sleep", "300"], start_new_session=True)
print(f"grandchild {g.pid}", flush=True)
f = os.fdopen(os.open(sys.argv[1], os.O_RDWR), "r")
print("ready", flush=True)
for line in f:
    print("got " + line.strip(), flush=True)
"""

SLEEPER = "import time\nprint('sleeping', flush=True)\ntime.sleep(300)\n"


def row(page: Page, process_id: str) -> Any:
    return page.locator(f'tr[data-id="{process_id}"]')


def open_log(page: Page, process_id: str) -> None:
    row(page, process_id).locator("button.link").click()
    expect(page.locator("#detail-title")).to_contain_text(process_id)


def shown_seqs(page: Page) -> list[int]:
    seqs = page.eval_on_selector_all("#loglines .logline", "els => els.map(e => e.dataset.seq)")
    return [int(s) for s in seqs]


def wait_for_log_line(gateway: Gateway, process_id: str, text: str) -> None:
    """Block until the gateway has logged ``text`` (follows its NDJSON log; no polling)."""
    url = f"/api/gateway/processes/{process_id}/logs"
    with gateway.client.stream("GET", url, params={"follow": "1"}, timeout=10) as response:
        for line in response.iter_lines():
            if text in line:
                return
    raise AssertionError(f"{text!r} never logged")


# ---- sign-in -----------------------------------------------------------------------------------


def test_sign_in_drops_fragment_and_keeps_session(signed_in: Page, gateway: Gateway, artifacts: Path) -> None:
    page = signed_in
    assert "#" not in page.url and "challenge" not in page.url
    token = page.evaluate("sessionStorage.getItem('desktop-gateway.session')")
    assert token and "token" in token
    expect(page.locator("#signin")).to_be_hidden()
    expect(page.locator("#conn")).to_contain_text("live")
    # A reload keeps the session (sessionStorage survives it; the challenge is gone).
    page.reload()
    expect(page.locator("#tabs")).to_be_visible()
    shot(page, artifacts, "01-processes-empty")


def test_reused_challenge_shows_expired_state(
    browser: Browser, gateway: Gateway, page_errors: PageErrors, artifacts: Path
) -> None:
    challenge = gateway.challenge()
    first = new_page(browser, page_errors)
    second = new_page(browser, page_errors)
    try:
        first.goto(gateway.sign_in_url(challenge))
        expect(first.locator("#tabs")).to_be_visible()
        second.goto(gateway.sign_in_url(challenge))
        expect(second.locator("#signin-title")).to_have_text("Session expired: run gateway open")
        expect(second.locator("#signin-help")).to_contain_text("gateway open")
        expect(second.locator("#tabs")).to_be_hidden()
        assert "challenge" not in second.url
        shot(second, artifacts, "02-session-expired")
        # No link at all in a tab that never signed in: a first visit, told how to sign in.
        second.goto(gateway.base + "/")
        expect(second.locator("#signin-title")).to_have_text("Sign in to desktop-gateway")
        expect(second.locator("#signin-help")).to_contain_text("gateway open")
    finally:
        first.context.close()
        second.context.close()
    assert not page_errors, page_errors


def test_session_ending_mid_use_shows_expired_state(signed_in: Page, gateway: Gateway) -> None:
    """At most 8 sessions live: eight newer ones push the page's out, and the page says so."""
    page = signed_in
    for _ in range(8):
        exchanged = httpx.post(
            f"{gateway.base}/gateway-auth/exchange", json={"challenge": gateway.challenge()}
        )
        assert exchanged.status_code == 200
    # The session check (every 5 s; it also keeps the session alive) meets the 401.
    expect(page.locator("#signin-title")).to_have_text("Session expired: run gateway open", timeout=10000)
    expect(page.locator("#tabs")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('desktop-gateway.session')") is None


def test_session_calls_without_origin_need_same_origin_fetch(gateway: Gateway) -> None:
    """The guard's allowance for browsers' Origin-less same-origin GETs, and nothing more."""
    token = httpx.post(
        f"{gateway.base}/gateway-auth/exchange", json={"challenge": gateway.challenge()}
    ).json()["sessionToken"]
    url = f"{gateway.base}/api/gateway/version"
    session = {"X-Desktop-Session-Token": token}
    assert httpx.get(url, headers=session).status_code == 403
    for site in ("cross-site", "same-site", "none"):
        assert httpx.get(url, headers={**session, "Sec-Fetch-Site": site}).status_code == 403
    assert httpx.get(url, headers={**session, "Sec-Fetch-Site": "same-origin"}).status_code == 200
    evil = {**session, "Sec-Fetch-Site": "same-origin", "Origin": "http://evil.example"}
    assert httpx.get(url, headers=evil).status_code == 403
    # The static shell is public and locked down.
    index = httpx.get(gateway.base + "/")
    assert index.status_code == 200
    assert "default-src 'none'" in index.headers["content-security-policy"]
    assert httpx.get(gateway.base + "/dashboard/app.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(gateway.base + "/dashboard/%2e%2e/routes_dashboard.py").status_code == 404
    assert httpx.get(gateway.base + "/api/gateway/processes").status_code == 401


# ---- processes, logs, kill -----------------------------------------------------------------------


def test_live_row_log_follow_pause_resume_and_kill(
    signed_in: Page, gateway: Gateway, artifacts: Path, tmp_path: Path
) -> None:
    page = signed_in
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    record = gateway.start([*python_child(ECHO_CHILD), str(fifo)], ticketId="T-42", kind="command")
    pid = record["pid"]
    created = psutil.Process(pid).create_time()

    # In the table within 1 s, from the live status stream.
    expect(row(page, record["id"])).to_be_visible(timeout=1000)
    expect(row(page, record["id"]).locator(".state")).to_have_text("running")
    expect(row(page, record["id"])).to_contain_text(str(pid))
    expect(row(page, record["id"])).to_contain_text("T-42")

    open_log(page, record["id"])
    lines = page.locator("#loglines")
    expect(lines).to_contain_text("ready")
    grandchild = int(re.search(r"grandchild (\d+)", lines.inner_text()).group(1))
    grand_created = psutil.Process(grandchild).create_time()

    with open(fifo, "w") as writer:
        # New lines show as they are written.
        writer.write("hello-1\n")
        writer.flush()
        expect(lines).to_contain_text("got hello-1")
        writer.write("hello-2\n")
        writer.flush()
        expect(lines).to_contain_text("got hello-2")

        # Paused: a line written now reaches the gateway but not the pane...
        page.click("#log-pause")
        expect(page.locator("#log-pause")).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#log-status")).to_contain_text("paused")
        writer.write("while-paused\n")
        writer.flush()
        wait_for_log_line(gateway, record["id"], "got while-paused")
        expect(lines).not_to_contain_text("while-paused")
        # ...and resuming from the last seq brings it, with nothing missed or repeated.
        page.click("#log-pause")
        expect(lines).to_contain_text("got while-paused")
        writer.write("after-resume\n")
        writer.flush()
        expect(lines).to_contain_text("got after-resume")
        seqs = shown_seqs(page)
        assert seqs == list(range(1, len(seqs) + 1)), seqs
        assert len(seqs) == 6
        shot(page, artifacts, "03-process-log")

    # Kill from the UI: confirmation first, then the receipt.
    page.click("#detail-kill")
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"Kill {record['id']}?")
    expect(page.locator("#confirm-cancel")).to_be_focused()
    page.click("#confirm-ok")
    receipt = page.locator("#receipt")
    expect(receipt).to_contain_text("Kill receipt", timeout=15000)
    expect(receipt.locator(".final-state")).to_have_text("killed")
    expect(receipt).to_contain_text("SIGTERM")
    expect(receipt).to_contain_text("none: the whole tree is gone")
    # Nothing of the tree is left: the child and its grandchild in another session.
    assert is_gone(pid, created)
    assert is_gone(grandchild, grand_created)
    expect(row(page, record["id"]).locator(".state")).to_have_text("killed")
    expect(row(page, record["id"])).to_contain_text("kill")
    expect(page.locator("#log-status")).to_contain_text("ended")
    shot(page, artifacts, "04-kill-receipt")


def test_teardown_from_the_table(signed_in: Page, gateway: Gateway, artifacts: Path) -> None:
    page = signed_in
    record = gateway.start(python_child(SLEEPER), ticketId="T-43")
    pid, created = record["pid"], psutil.Process(record["pid"]).create_time()
    target = row(page, record["id"])
    expect(target).to_be_visible(timeout=1000)
    # Cancel leaves it running.
    target.get_by_role("button", name=f"Tear down {record['id']}").click()
    page.click("#confirm-cancel")
    expect(page.locator("#confirm")).to_be_hidden()
    assert gateway.record(record["id"])["state"] == "running"

    target.get_by_role("button", name=f"Tear down {record['id']}").click()
    expect(page.locator("#confirm")).to_contain_text("Tear down")
    page.click("#confirm-ok")
    receipt = page.locator("#receipt")
    expect(receipt).to_contain_text("Teardown receipt", timeout=15000)
    expect(receipt.locator(".final-state")).to_have_text("killed (torn down)")
    assert is_gone(pid, created)
    expect(target.locator(".state")).to_have_text("killed · torn down")
    expect(page.locator("#detail-teardown")).to_be_disabled()
    assert gateway.record(record["id"])["tornDown"] is True
    shot(page, artifacts, "05-teardown-receipt")


def test_filters_by_kind_ticket_and_state(signed_in: Page, gateway: Gateway) -> None:
    page = signed_in
    alpha = gateway.start(python_child(SLEEPER), kind="alpha", ticketId="T-ALPHA")
    beta = gateway.start(python_child(SLEEPER), kind="beta", ticketId="T-BETA")
    expect(row(page, alpha["id"])).to_be_visible(timeout=1000)
    expect(row(page, beta["id"])).to_be_visible(timeout=1000)
    page.select_option("#filter-kind", "alpha")
    expect(row(page, beta["id"])).to_have_count(0)
    expect(row(page, alpha["id"])).to_be_visible()
    page.select_option("#filter-kind", "")
    page.fill("#filter-ticket", "t-beta")
    expect(row(page, alpha["id"])).to_have_count(0)
    expect(row(page, beta["id"])).to_be_visible()
    page.fill("#filter-ticket", "")
    page.select_option("#filter-state", "killed")
    expect(row(page, beta["id"])).to_have_count(0)
    page.select_option("#filter-state", "active")
    expect(row(page, alpha["id"])).to_be_visible()
    for rec in (alpha, beta):
        gateway.api("POST", f"/api/gateway/processes/{rec['id']}/kill")
    expect(row(page, alpha["id"])).to_have_count(0)


def test_log_pane_copes_with_100k_lines(signed_in: Page, gateway: Gateway) -> None:
    page = signed_in
    code = "import sys\nsys.stdout.write(''.join(f'line {i}\\n' for i in range(1, 100001)))\n"
    record = gateway.start(python_child(code))
    wait_for_log_line(gateway, record["id"], '"type":"end"')
    expect(row(page, record["id"])).to_be_visible()
    open_log(page, record["id"])
    last_seq = gateway.record(record["id"])["lastSeq"]  # 100,000 lines and the exit note
    assert last_seq >= 100_000
    expect(page.locator("#log-status")).to_contain_text(f"{last_seq:,} lines", timeout=20000)
    expect(page.locator("#log-status")).to_contain_text("ended")
    # Following: the last line is in view; only a window of rows is in the DOM.
    expect(page.locator("#loglines")).to_contain_text("line 100000")
    assert page.locator("#loglines .logline").count() < 200
    # The page still answers at once, and Home jumps to the first line.
    page.focus("#logview")
    page.keyboard.press("Home")
    expect(page.locator("#loglines .logline").first).to_have_text(re.compile(r"^1\s*line 1$"))
    expect(page.locator("#log-follow")).not_to_be_checked()
    page.keyboard.press("End")
    expect(page.locator("#loglines")).to_contain_text("line 100000")


# ---- approvals -------------------------------------------------------------------------------------


def _held_start(gateway: Gateway, out: dict[str, Any]) -> None:
    with httpx.Client(base_url=gateway.base, timeout=30) as client:
        out["response"] = client.post(
            "/api/gateway/processes",
            json={"argv": python_child("print('approved child ran')")},
            headers={
                "X-Desktop-Gateway-Token": gateway.token,
                "X-Desktop-Approval-Reason": "dashboard test",
            },
        )


def test_held_request_approved_and_denied_from_the_ui(
    signed_in: Page, gateway: Gateway, artifacts: Path
) -> None:
    page = signed_in
    page.click("#tab-approvals")
    expect(page.locator("#approvals-empty")).to_be_visible()
    gateway.set_threshold("gateway", "medium")  # process_control is high: it must ask
    try:
        cards = page.locator("#approvals-pending li.approval")
        for decision, status in (("Approve", 201), ("Deny", 403), ("Always allow", 201)):
            out: dict[str, Any] = {}
            caller = threading.Thread(target=_held_start, args=(gateway, out))
            caller.start()
            expect(cards).to_have_count(1)
            expect(cards).to_contain_text("POST /api/gateway/processes")
            expect(cards).to_contain_text("process_control")
            expect(cards).to_contain_text("dashboard test")
            expect(page.locator("#approvals-badge")).to_have_text("1")
            if decision == "Approve":
                shot(page, artifacts, "06-approvals")
            cards.get_by_role("button", name=decision, exact=False).first.click()
            if decision == "Always allow":  # asks first: it outlives this request
                expect(page.locator("#confirm")).to_contain_text("7 days")
                page.click("#confirm-ok")
            caller.join(timeout=15)
            assert not caller.is_alive()
            assert out["response"].status_code == status, out["response"].text
            expect(cards).to_have_count(0)
            expect(page.locator("#approvals-badge")).to_be_hidden()
        expect(page.locator("#approvals-recent")).to_contain_text("approved")
        expect(page.locator("#approvals-recent")).to_contain_text("denied")
        expect(page.locator("#approvals-recent")).to_contain_text("always_allow")
        # The rule now lets the same request through without asking.
        out = {}
        _held_start(gateway, out)
        assert out["response"].status_code == 201
        rules = gateway.api("GET", "/api/gateway/policy")["rules"]
        assert [r["operation"] for r in rules if r["effect"] == "allow"] == ["process_control"]
        ran = [
            rec
            for rec in gateway.api("GET", "/api/gateway/processes")["processes"]
            if "approved child ran" in " ".join(rec["argv"])
        ]
        assert len(ran) == 3, ran
    finally:
        gateway.set_threshold("gateway", "high")
        for rule in gateway.api("GET", "/api/gateway/policy")["rules"]:
            gateway.api("DELETE", f"/api/gateway/policy/rules/{rule['id']}")


JUDGES_T7 = {
    "ticketId": "T-7",
    "jobId": "p_loop",
    "outcome": "passed",
    "state": "exited",
    "verdicts": [],
    "iterations": [
        {
            "iteration": 1,
            "passed": False,
            "verdicts": [
                {
                    "iteration": 1,
                    "name": "tests",
                    "passed": False,
                    "score": None,
                    "threshold": None,
                    "justification": "2 failing tests",
                    "durationMs": 812,
                    "processId": "p_j1",
                },
                {
                    "iteration": 1,
                    "name": "review",
                    "passed": True,
                    "score": 0.8,
                    "threshold": 0.7,
                    "justification": "reads well",
                    "durationMs": 3000,
                    "processId": "p_j2",
                },
            ],
        },
        {
            "iteration": 2,
            "passed": True,
            "verdicts": [
                {
                    "iteration": 2,
                    "name": "tests",
                    "passed": True,
                    "score": 0.9,
                    "threshold": 0.7,
                    "justification": "all green",
                    "durationMs": 700,
                    "processId": "p_j3",
                },
            ],
        },
    ],
}


# ---- tickets and system ------------------------------------------------------------------------------


def test_tickets_and_system_views(signed_in: Page, gateway: Gateway, artifacts: Path) -> None:
    page = signed_in
    run = gateway.start(
        python_child("print('agent run')"), kind="symphony", ticketId="T-7", labels={"iteration": "1"}
    )
    expect(row(page, run["id"])).to_be_visible(timeout=1000)
    # T-7 is no Symphony ticket (no worktree), so its judges route answers 404; stand in the
    # Symphony service's answer shape for a two-iteration loop to check how verdicts render.
    page.route(
        "**/api/gateway/symphony/judges/T-7",
        lambda route: route.fulfill(json=JUDGES_T7),
    )
    page.click("#tab-tickets")
    ticket = page.locator('details[data-ticket="T-7"]')
    expect(ticket).to_be_visible()
    ticket.locator("summary").click()
    expect(ticket).to_contain_text(run["id"])
    expect(ticket).to_contain_text("#1")
    verdicts = ticket.locator(".verdict-table tbody tr")
    expect(verdicts).to_have_count(3)
    expect(verdicts.nth(0)).to_contain_text("fail")
    expect(verdicts.nth(0)).to_contain_text("2 failing tests")
    expect(verdicts.nth(2)).to_contain_text("pass")
    expect(verdicts.nth(2)).to_contain_text("0.9 / 0.7")
    # The run's state follows the live stream (it printed and exited).
    expect(ticket.locator(f'tr[data-run="{run["id"]}"] .state')).to_have_text("exited")
    shot(page, artifacts, "07-tickets")
    # A run id leads back to its log.
    ticket.get_by_role("button", name=run["id"]).click()
    expect(page.locator("#view-processes")).to_be_visible()
    expect(page.locator("#loglines")).to_contain_text("agent run")

    page.click("#tab-system")
    expect(page.locator("#sys-gateway")).to_contain_text("0.1.0")
    expect(page.locator("#sys-checks")).to_contain_text("database")
    expect(page.locator('#sys-relay dd[data-relay-state="off"]')).to_contain_text("off")
    binaries = page.locator("#sys-binaries tr")
    expect(binaries).to_have_count(5)
    for name in ("claude", "codex", "gh", "git", "python3"):
        expect(page.locator(f'#sys-binaries tr[data-binary="{name}"]')).to_be_visible()
    shot(page, artifacts, "08-system")


# ---- small screens and the keyboard ----------------------------------------------------------------


def test_keyboard_and_800x600(
    browser: Browser, gateway: Gateway, page_errors: PageErrors, artifacts: Path
) -> None:
    page = new_page(browser, page_errors, 800, 600)
    try:
        sign_in(page, gateway)
        record = gateway.start(python_child(SLEEPER), ticketId="T-KEY")
        expect(row(page, record["id"])).to_be_visible(timeout=1000)
        # Tab order starts with the skip link, then the tabs; arrows move between tabs.
        page.keyboard.press("Tab")
        expect(page.locator(".skip-link")).to_be_focused()
        page.keyboard.press("Tab")
        expect(page.locator("#tab-processes")).to_be_focused()
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("none", ""), outline
        page.keyboard.press("ArrowRight")
        expect(page.locator("#tab-approvals")).to_have_attribute("aria-selected", "true")
        expect(page.locator("#view-approvals")).to_be_visible()
        page.keyboard.press("ArrowLeft")
        expect(page.locator("#view-processes")).to_be_visible()
        # Open the log and kill with the keyboard only.
        row(page, record["id"]).locator("button.link").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#loglines")).to_contain_text("sleeping")
        page.locator("#detail-kill").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#confirm-cancel")).to_be_focused()
        page.keyboard.press("Tab")
        expect(page.locator("#confirm-ok")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#receipt .final-state")).to_have_text("killed", timeout=15000)
        # Nothing spills sideways at 800 px: the page itself does not scroll horizontally.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        shot(page, artifacts, "09-800x600")
    finally:
        page.context.close()
    assert not page_errors, page_errors
