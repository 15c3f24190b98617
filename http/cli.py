"""``gateway``: run the gateway (``serve``) or talk to a running one.

The client finds the gateway through ``<state>/gateway.json`` and authenticates with
``<state>/gateway-token``, so it works for the user who runs the gateway and nobody else.
Every failure is one line on stderr and a non-zero exit; ``--json`` prints the raw answers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import webbrowser
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

import httpx

from gateway.supervisor import StateDir, resolve_state_dir

EXIT_NOT_RUNNING = 3
EXIT_ERROR = 1


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    print(f"gateway: {message}", file=sys.stderr)
    raise SystemExit(code)


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


# ---- serve --------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import trio

    from gateway.http.serve import ServeError, ServeOptions, is_loopback_host, serve_forever
    from gateway.http.telemetry import configure_logging

    configure_logging()
    opts = ServeOptions.from_env(
        resolve_state_dir(args.state_dir),
        host=args.host,
        port=args.port,
        allow_remote=args.allow_remote,
    )
    opts.extra_origins += args.allow_origin or []
    if not is_loopback_host(args.host) and args.allow_remote:
        print(
            f"gateway: WARNING: listening on non-loopback host {args.host}; anyone who can reach "
            "it and holds a token can run commands as you",
            file=sys.stderr,
        )

    def ready(handle: Any) -> None:
        print(
            f"gateway: listening on http://{args.host}:{handle.port} (state {opts.state_dir})",
            file=sys.stderr,
            flush=True,
        )

    try:
        trio.run(serve_forever, opts, ready)
    except* ServeError as group:
        _fail(str(_first(group)))
    print("gateway: stopped", file=sys.stderr)
    return 0


# ---- the client ---------------------------------------------------------------------------


class Client:
    def __init__(self, state_dir: str | None, timeout: float = 30.0) -> None:
        root = resolve_state_dir(state_dir)
        state = StateDir.__new__(StateDir)
        object.__setattr__(state, "root", root)  # read-only use: don't create the dir
        info = state.read_info() if root.is_dir() else None
        if not info or "port" not in info:
            raise CliError(f"no gateway is running (no {root / 'gateway.json'})", EXIT_NOT_RUNNING)
        try:
            token = (root / "gateway-token").read_text().strip()
        except OSError as exc:
            raise CliError(f"cannot read the gateway token: {exc.strerror}") from None
        self.port = int(info["port"])
        self.base = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(
            base_url=self.base,
            headers={"X-Desktop-Gateway-Token": token},
            timeout=httpx.Timeout(timeout, read=None),
            trust_env=False,
        )

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            response = self.http.request(method, path, **kw)
        except httpx.ConnectError:
            raise CliError(
                f"no gateway is running (nothing answers on port {self.port})", EXIT_NOT_RUNNING
            ) from None
        except httpx.HTTPError as exc:
            raise CliError(f"request failed: {exc}") from None
        return self._check(response)

    @staticmethod
    def _check(response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            err = body if isinstance(body, dict) else {}
            raise CliError(f"{response.status_code} {err.get('code', '')}: {err.get('error', '')}")
        return body

    def stream(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        try:
            with self.http.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    self._check(response)
                for line in response.iter_lines():
                    if line:
                        yield json.loads(line)
        except httpx.ConnectError:
            raise CliError("no gateway is running", EXIT_NOT_RUNNING) from None
        except httpx.HTTPError as exc:
            raise CliError(f"stream broke: {exc}") from None


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    for row in [headers, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())


def _short_argv(argv: list[str], width: int = 50) -> str:
    text = " ".join(argv)
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_status(args: argparse.Namespace, client: Client) -> int:
    health = client.request("GET", "/api/gateway/health-check")
    if args.json:
        _print_json(health)
        return 0
    checks = {c["id"]: c for c in health["checks"]}
    print(f"gateway {health['version']} on {client.base}: {health['status']}")
    sup = checks["supervisor"].get("details", {})
    print(f"  processes: {sup.get('active', 0)} active; {sup.get('processes', {})}")
    print(f"  database: {'ok' if checks['database']['passed'] else 'FAILED'}")
    print(f"  disk free: {checks['disk'].get('details', {}).get('freeBytes', 0) // (1024 * 1024)} MiB")
    for check in health["checks"]:
        if check["id"] not in ("supervisor", "database", "disk") and not check["passed"]:
            print(f"  {check['label']}: {check.get('error', 'failed')}")
    return 0


def cmd_ps(args: argparse.Namespace, client: Client) -> int:
    params = {k: v for k, v in (("kind", args.kind), ("ticketId", args.ticket), ("state", args.state)) if v}
    if not args.all and "state" not in params:
        params["state"] = "starting,running,stopping"
    data = client.request("GET", "/api/gateway/processes", params=params)
    if args.json:
        _print_json(data)
        return 0
    rows = [
        [p["id"], p["kind"], p["state"], str(p["pid"] or "-"), p["ticketId"] or "-",
         _short_argv(p["argv"])]
        for p in data["processes"]
    ]  # fmt: skip
    _table(rows, ["ID", "KIND", "STATE", "PID", "TICKET", "COMMAND"])
    return 0


def cmd_logs(args: argparse.Namespace, client: Client) -> int:
    params: dict[str, Any] = {"follow": "1" if args.follow else "0"}
    if args.since is not None:
        params["since"] = args.since
    if args.tail is not None:
        params["tail"] = args.tail
    status = 0
    for obj in client.stream(f"/api/gateway/processes/{args.id}/logs", params):
        if args.json:
            print(json.dumps(obj), flush=True)
        elif obj["type"] == "log":
            out = sys.stderr if obj["stream"] == "stderr" else sys.stdout
            print(obj["text"], file=out, flush=True)
        elif obj["type"] == "end" and obj.get("process"):
            status = 0 if obj["process"]["state"] == "exited" else 1
    return status if args.follow else 0


def _receipt(args: argparse.Namespace, client: Client, action: str) -> int:
    data = client.request("POST", f"/api/gateway/processes/{args.id}/{action}")
    if args.json:
        _print_json(data)
        return 0
    proc = data["process"]
    if data.get("alreadyEnded") and action == "kill":
        print(f"{proc['id']}: already ended ({proc['state']})")
        return 0
    sigs = ", ".join(s["signal"] for s in data["signals"]) or "none"
    extra = f"; SURVIVORS {data['survivors']}" if data["survivors"] else ""
    print(f"{proc['id']}: {proc['state']} in {data['elapsedMs']} ms (signals: {sigs}){extra}")
    return 1 if data["survivors"] else 0


def cmd_kill(args: argparse.Namespace, client: Client) -> int:
    return _receipt(args, client, "kill")


def cmd_teardown(args: argparse.Namespace, client: Client) -> int:
    return _receipt(args, client, "teardown")


def cmd_run(args: argparse.Namespace, client: Client) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise CliError("run: give the command after --, e.g. gateway run -- sleep 60")
    body: dict[str, Any] = {"argv": argv, "cwd": os.path.abspath(args.cwd or os.getcwd())}
    if args.kind:
        body["kind"] = args.kind
    if args.ticket:
        body["ticketId"] = args.ticket
    data = client.request("POST", "/api/gateway/processes", json=body)
    if args.json:
        _print_json(data)
    else:
        print(data["id"])
    return 0


def cmd_token(args: argparse.Namespace, client: Client | None) -> int:
    root = resolve_state_dir(args.state_dir)
    try:
        print((root / "gateway-token").read_text().strip())
    except OSError:
        raise CliError(f"no token yet in {root} (start the gateway once)") from None
    return 0


def cmd_open(args: argparse.Namespace, client: Client) -> int:
    """Mint a challenge and print (and try to open) the URL a browser trades for a session."""
    data = client.request("POST", "/api/gateway/auth/challenge")
    url = f"{client.base}/#challenge={data['challengeToken']}"
    if args.json:
        _print_json({**data, "url": url})
        return 0
    print(url)
    if not args.no_browser:
        webbrowser.open(url)
    return 0


def cmd_approvals(args: argparse.Namespace, client: Client) -> int:
    if args.id:
        if not args.decision:
            raise CliError("approvals ID needs --approve, --deny or --always")
        data = client.request("POST", f"/api/gateway/approvals/{args.id}", json={"decision": args.decision})
        if args.json:
            _print_json(data)
        else:
            print(f"{data['id']}: {data['status']}")
        return 0
    data = client.request("GET", "/api/gateway/approvals")
    if args.json:
        _print_json(data)
        return 0
    rows = [
        [a["id"], a["operation"] or "-", a["tier"], a["principal"], f"{a['method']} {a['path']}",
         a["expiresAt"] or "-"]
        for a in data["approvals"]
    ]  # fmt: skip
    if not rows:
        print("no pending approvals")
    else:
        _table(rows, ["ID", "OPERATION", "TIER", "PRINCIPAL", "REQUEST", "EXPIRES"])
    return 0


# ---- argument parsing ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", help="state directory (default: $GATEWAY_STATE_DIR or XDG)")
    common.add_argument("--json", action="store_true", help="print raw JSON")

    parser = argparse.ArgumentParser(prog="gateway", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", parents=[common], help="run the gateway in the foreground")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="this port only (no fallback)")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    p.add_argument("--allow-origin", action="append", help="an extra browser origin (repeatable)")

    sub.add_parser("status", parents=[common], help="health of the running gateway")
    p = sub.add_parser("ps", parents=[common], help="list processes (active by default)")
    p.add_argument("-a", "--all", action="store_true", help="include ended processes")
    p.add_argument("--kind")
    p.add_argument("--ticket")
    p.add_argument("--state", help="state or comma list")
    p = sub.add_parser("logs", parents=[common], help="print a process's log")
    p.add_argument("id")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--since", type=int)
    p.add_argument("--tail", type=int)
    for name in ("kill", "teardown"):
        p = sub.add_parser(name, parents=[common], help=f"{name} a process tree")
        p.add_argument("id")
    p = sub.add_parser("run", parents=[common], help="start a supervised command: run -- argv...")
    p.add_argument("--cwd")
    p.add_argument("--kind")
    p.add_argument("--ticket")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p = sub.add_parser("open", parents=[common], help="open the dashboard with a fresh session")
    p.add_argument("--no-browser", action="store_true")
    sub.add_parser("token", parents=[common], help="print the gateway token")
    p = sub.add_parser("approvals", parents=[common], help="list or decide held requests")
    p.add_argument("id", nargs="?")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--approve", dest="decision", action="store_const", const="approved")
    group.add_argument("--deny", dest="decision", action="store_const", const="denied")
    group.add_argument("--always", dest="decision", action="store_const", const="always_allow")
    return parser


COMMANDS = {
    "status": cmd_status,
    "ps": cmd_ps,
    "logs": cmd_logs,
    "kill": cmd_kill,
    "teardown": cmd_teardown,
    "run": cmd_run,
    "open": cmd_open,
    "approvals": cmd_approvals,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return cmd_serve(args)
    try:
        if args.command == "token":
            return cmd_token(args, None)
        client = Client(args.state_dir)
        return COMMANDS[args.command](args, client)
    except CliError as exc:
        _fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())


