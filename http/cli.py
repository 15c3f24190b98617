"""gateway: run the desktop-gateway (serve) or talk to a running one.

The client finds the gateway through <state>/gateway.json and authenticates with
<state>/gateway-token, so it works for the user who runs the gateway and nobody else.
Every failure is one line on stderr and a non-zero exit (3: no gateway runs); --json prints
the raw answers. Global options (--state-dir, --json) go before or after the command.

Imports are lazy: a read command loads only the standard library and the state-dir helper,
so it answers in well under 150 ms. ``serve`` loads the server when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from gateway.http.cli_client import EXIT_ERROR, EXIT_NOT_RUNNING, CliError, path_of, state_root
from gateway.http.cli_nodes import (
    add_node_agent_parser,
    add_nodes_parser,
    add_serve_options,
    apply_serve_options,
    cmd_node_agent,
    cmd_nodes,
)
from gateway.supervisor import __version__

if TYPE_CHECKING:
    from gateway.http.cli_client import Client

EXIT_USAGE = 2

EPILOG = """\
examples:
  gateway serve                      run the gateway in this terminal
  gateway open                       sign in to the dashboard in a browser
  gateway run --env DEBUG=1 -- npm run dev
  gateway ps                         live processes (ps -a: ended ones too)
  gateway logs -f -n 50 p_19a        follow a log from its last 50 lines (id prefix)
  eval "$(gateway env)"              PORT, TOKEN and H for curl
  gateway completion bash > ~/.local/share/bash-completion/completions/gateway
"""

FULL_ID = re.compile(r"^[a-z]+_[0-9a-f]{21}$")
LEVELS = ("debug", "info", "warning", "error")


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    print(f"gateway: {message}", file=sys.stderr)
    raise SystemExit(code)


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def port_number(text: str) -> int:
    """argparse type for --port: 0 (the kernel picks) to 65535, else a one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is out of range (0-65535; 0 lets the kernel pick)")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


# ---- serve --------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    import trio

    from gateway.http.serve import ServeError, ServeOptions, is_loopback_host, serve_forever
    from gateway.http.telemetry import configure_logging
    from gateway.supervisor.heap import settle_heap

    log = configure_logging(
        getattr(logging, args.log_level.upper()),
        access=not args.no_access_log,
        human=args.log_format == "human" or (args.log_format == "auto" and sys.stderr.isatty()),
    )
    opts = ServeOptions.from_env(
        state_root(args.state_dir),
        host=args.host,
        port=args.port,
        allow_remote=args.allow_remote,
    )
    opts.extra_origins += args.allow_origin or []
    apply_serve_options(args, opts)
    if not is_loopback_host(args.host) and args.allow_remote:
        log.warning(
            "listening on non-loopback host %s; anyone who can reach it and holds a token can run "
            "commands as you",
            args.host,
        )

    def ready(handle: Any) -> None:
        settle_heap()  # start-up is over: full collections stop walking it (docstring there)
        log.info("listening on http://%s:%s (state %s)", args.host, handle.port, opts.state_dir)
        log.info("dashboard: run `%s open` for a sign-in link", open_command(args.state_dir))

    try:
        trio.run(serve_forever, opts, ready)
    except* ServeError as group:
        _fail(str(_first(group)))
    log.info("stopped")
    return 0


def open_command(state_dir: str | None) -> str:
    """The ``gateway`` command a person can paste in any terminal (full path, state dir)."""
    import shlex
    import shutil

    script = os.path.join(os.path.dirname(sys.executable), "gateway")
    found = shutil.which("gateway")
    command = "gateway" if found and os.path.exists(script) and os.path.samefile(found, script) else script
    if not os.path.exists(script):
        command = f"{sys.executable} -m gateway"
    if state_dir is not None:
        command += f" --state-dir {shlex.quote(str(state_root(state_dir)))}"
    return command


# ---- read commands ------------------------------------------------------------------------


def resolve_id(client: Client, given: str) -> str:
    """A full id, or the one id that starts (or else ends) with ``given``; ambiguity is an error."""
    if not given or "/" in given:
        raise CliError(f"not a process id: {given!r}")
    if FULL_ID.match(given):
        return given  # a whole id: no listing needed (an unknown one is the gateway's 404)
    listing = client.request("GET", "/api/gateway/processes")["processes"]
    ids = [p["id"] for p in listing]
    if given in ids:
        return given
    for match in (lambda i: i.startswith(given) or i[2:].startswith(given), lambda i: i.endswith(given)):
        found = [i for i in ids if match(i)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            shown = ", ".join(found[:5]) + (" …" if len(found) > 5 else "")
            raise CliError(f"{given!r} matches {len(found)} processes ({shown}); give more of the id")
    raise CliError(f"404 process_not_found: no process {given[:100]} (see gateway ps -a)")


def cmd_status(args: argparse.Namespace, client: Client) -> int:
    from gateway.http.cli_show import status_text

    health = client.request("GET", "/api/gateway/health-check", accept=(503,))
    if args.json:
        _print_json(health)
    else:
        print(status_text(health, client.base, str(client.root)))
    return 0 if health.get("status") == "ok" else 1


def cmd_ps(args: argparse.Namespace, client: Client) -> int:
    from gateway.http.cli_show import ACTIVE, ps_rows

    params = {"kind": args.kind, "ticketId": args.ticket, "state": args.state}
    if not args.all and not args.state:
        params["state"] = ",".join(ACTIVE)
    data = client.request("GET", "/api/gateway/processes", params=params)
    processes = sorted(data["processes"], key=lambda p: p["id"])
    if args.json:
        _print_json({**data, "processes": processes})
    else:
        print(ps_rows(processes))
    return 0


def cmd_show(args: argparse.Namespace, client: Client) -> int:
    from gateway.http.cli_show import record_text

    process_id = resolve_id(client, args.id)
    record = client.request("GET", path_of("/api/gateway/processes", process_id))
    if args.json:
        _print_json(record)
    else:
        print(record_text(record))
    return 0


def cmd_logs(args: argparse.Namespace, client: Client) -> int:
    from gateway.http.cli_show import Conversation, Style, use_colour

    process_id = resolve_id(client, args.id)
    params: dict[str, Any] = {"follow": "1" if args.follow else "0"}
    if args.since is not None:
        params["since"] = args.since
    if args.lines is not None:
        params["tail"] = args.lines
    streams = set(args.stream or ("stdout", "stderr", "system"))
    talk = Conversation(Style(use_colour(sys.stdout)))
    status = 0
    for obj in client.stream(path_of("/api/gateway/processes", process_id, "logs"), params):
        if args.json:
            print(json.dumps(obj), flush=True)
        elif obj["type"] == "log" and obj.get("stream") in streams:
            out = sys.stderr if obj["stream"] == "stderr" else sys.stdout
            lines = [obj["text"]] if args.raw else talk.lines(obj)
            for line in lines:
                print(line, file=out, flush=True)
        elif obj["type"] == "end" and obj.get("process"):
            status = 0 if obj["process"]["state"] == "exited" else 1
    return status if args.follow else 0


# ---- control commands ---------------------------------------------------------------------


def _receipt(args: argparse.Namespace, client: Client, action: str) -> int:
    if args.id is None:
        return _bulk(args, client, action)
    if args.all or args.ticket or args.kind:
        _fail(f"{action}: give a process id or --all/--ticket/--kind, not both", EXIT_USAGE)
    process_id = resolve_id(client, args.id)
    data = client.request("POST", path_of("/api/gateway/processes", process_id, action))
    if args.json:
        _print_json(data)
        return 0
    return print_receipt(data, action)


def _bulk(args: argparse.Namespace, client: Client, action: str) -> int:
    """``kill --all`` / ``--ticket T`` / ``--kind K``: one request, one receipt per process."""
    body: dict[str, Any] = {}
    if args.ticket:
        body["ticketId"] = args.ticket
    if args.kind:
        body["kind"] = args.kind
    if not body and not args.all:
        _fail(f"{action}: give a process id, --all, --ticket or --kind", EXIT_USAGE)
    if not body:
        body["all"] = True
    data = client.request("POST", f"/api/gateway/processes/{action}", json_body=body)
    if args.json:
        _print_json(data)
        return 0
    if not data["receipts"]:
        print(f"nothing to {action}")
    status = 0
    for receipt in data["receipts"]:
        status |= print_receipt(receipt, action)
    return status


def print_receipt(data: dict[str, Any], action: str) -> int:
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


def _start(args: argparse.Namespace, client: Client, body: dict[str, Any]) -> int:
    data = client.request("POST", "/api/gateway/processes", json_body=body)
    if args.json and not args.follow:
        _print_json(data)
    else:
        print(data["id"], file=sys.stderr if args.follow else sys.stdout, flush=True)
    if not args.follow:
        return 0
    follow = argparse.Namespace(
        id=data["id"], follow=True, since=None, lines=None, raw=False, stream=None, json=args.json
    )
    return cmd_logs(follow, client)


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
    if args.env:
        body["env"] = dict(args.env)
    if args.label:
        body["labels"] = dict(args.label)
    if args.restart != "never" or args.max_restarts is not None:
        body["restart"] = {"mode": args.restart}
        if args.max_restarts is not None:
            body["restart"]["maxRestarts"] = args.max_restarts
    if args.max_runtime is not None:
        body["maxRuntime"] = args.max_runtime
    if args.stall is not None:
        body["stallTimeout"] = args.stall
    if args.grace is not None:
        body["stopGrace"] = args.grace
    if args.events:
        body["eventParser"] = args.events
    return _start(args, client, body)


def cmd_restart(args: argparse.Namespace, client: Client) -> int:
    """Kill the process (if it runs) and start its command again as a new process."""
    process_id = resolve_id(client, args.id)
    record = client.request("GET", path_of("/api/gateway/processes", process_id))
    if record["kind"] != "command":
        raise CliError(
            f"{process_id} is a {record['kind']} process; restart only repeats commands started "
            "with gateway run (start agent runs again through their own route)"
        )
    if record["state"] in ("starting", "running", "stopping"):
        receipt = client.request("POST", path_of("/api/gateway/processes", process_id, "kill"))
        if receipt["survivors"]:
            raise CliError(f"{process_id}: survivors after kill {receipt['survivors']}; not restarting")
    body: dict[str, Any] = {
        "argv": record["argv"],
        "kind": record["kind"],
        "labels": record.get("labels") or {},
    }
    if record.get("cwd"):
        body["cwd"] = record["cwd"]
    if record.get("ticketId"):
        body["ticketId"] = record["ticketId"]
    args.follow = False
    return _start(args, client, body)


def cmd_open(args: argparse.Namespace, client: Client) -> int:
    """Mint a challenge and print (and try to open) the URL a browser trades for a session."""
    data = client.request("POST", "/api/gateway/auth/challenge")
    url = f"{client.base}/#challenge={data['challengeToken']}"
    if args.json:
        _print_json({**data, "url": url})
        return 0
    print(url)
    if not args.no_browser:
        import webbrowser

        webbrowser.open(url)
    return 0


def cmd_approvals(args: argparse.Namespace, client: Client) -> int:
    from gateway.http.cli_show import table

    if args.id:
        if not args.decision:
            raise CliError("approvals ID needs --approve, --deny or --always")
        data = client.request(
            "POST", path_of("/api/gateway/approvals", args.id), json_body={"decision": args.decision}
        )
        if args.json:
            _print_json(data)
        else:
            print(f"{data['id']}: {data['status']}")
        return 0
    data = client.request("GET", "/api/gateway/approvals")
    if args.json:
        _print_json(data)
        return 0
    if not data["approvals"]:
        print("no pending approvals")
        return 0
    for a in data["approvals"]:
        print(approval_text(a, table))
        print()
    return 0


def approval_text(a: dict[str, Any], table: Callable[[list[list[str]], list[str]], str]) -> str:
    """What a held request will do: the command it starts (argv, cwd, env keys), not only its path."""
    import shlex

    lines = [
        f"{a['id']}  {a['method']} {a['path']}",
        f"  operation  {a.get('operation') or '-'} ({a.get('tier')} risk), asked by {a.get('principal')}",
    ]
    detail = a.get("detail") or {}
    if detail.get("argv"):
        lines.append(f"  command    {shlex.join(detail['argv'])}")
    if detail.get("cwd"):
        lines.append(f"  cwd        {detail['cwd']}")
    if detail.get("envKeys"):
        lines.append(f"  env keys   {', '.join(detail['envKeys'])}")
    if detail.get("ticketId"):
        lines.append(f"  ticket     {detail['ticketId']}")
    if a.get("reason"):
        lines.append(f"  reason     {a['reason']}")
    lines.append(f"  expires    {a.get('expiresAt') or '-'}")
    return "\n".join(lines)


# ---- local commands (no gateway needed) ---------------------------------------------------


def cmd_token(args: argparse.Namespace) -> int:
    from gateway.http.cli_client import read_token

    print(read_token(state_root(args.state_dir)))
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from gateway.http.cli_client import env_exports

    sys.stdout.write(env_exports(state_root(args.state_dir)))
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    print(shtab.complete(build_parser(), shell=args.shell))
    return 0


def cmd_service(args: argparse.Namespace) -> int:
    from gateway.http.service import service_command

    return service_command(args)


# ---- argument parsing ---------------------------------------------------------------------


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On subcommands the defaults are SUPPRESSed so `gateway --json ps` is not undone by ps.
    default: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="the gateway's state directory (default: $GATEWAY_STATE_DIR, else "
        "$XDG_STATE_HOME/desktop-gateway)",
        **default,
    )
    parser.add_argument("--json", action="store_true", help="print the API's JSON answer", **default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description=(__doc__ or "").split("\n\n")[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-V", "--version", action="version", version=f"gateway {__version__}")
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, **kw)
        _global_options(p, top=False)
        return p

    def process_id(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("id", metavar="ID", help=f"{what}: a process id, or a unique prefix or suffix of one")

    p = command("serve", "run the gateway in the foreground (Ctrl-C stops it and its children)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=port_number, default=None,
        help="this port only, 0 for any free one (default: 19432 or $GATEWAY_PORT, then the next 3)",
    )  # fmt: skip
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    p.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help="an extra browser origin to accept (repeatable)",
    )
    p.add_argument(
        "--log-level", choices=LEVELS, default="info", help="least severe log line shown (default: info)"
    )
    p.add_argument("--no-access-log", action="store_true", help="no line per HTTP request")
    p.add_argument(
        "--log-format", choices=("auto", "human", "json"), default="auto",
        help="human lines or JSON lines (default: human on a terminal, JSON otherwise)",
    )  # fmt: skip
    add_serve_options(p)
    add_node_agent_parser(command)
    add_nodes_parser(command)

    command("status", "health of the running gateway (exit 1 when degraded)")

    p = command("ps", "list processes: live ones, or all with -a")
    p.add_argument("-a", "--all", action="store_true", help="include ended processes")
    p.add_argument("--kind", help="only this kind (command, symphony, deploy, git, ...)")
    p.add_argument("--ticket", metavar="ID", help="only this ticket's processes")
    p.add_argument("--state", help="only these states, comma separated (running,exited,...)")

    p = command("show", "every detail of one process")
    process_id(p, "the process")

    p = command("logs", "print a process's log; agent runs read as a conversation")
    process_id(p, "the process")
    p.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until the process ends"
    )
    p.add_argument(
        "-n",
        "--lines",
        "--tail",
        dest="lines",
        type=non_negative,
        metavar="N",
        help="start from the last N lines",
    )
    p.add_argument("--since", type=non_negative, metavar="SEQ", help="only lines after this sequence number")
    p.add_argument(
        "--stream", action="append", choices=("stdout", "stderr", "system"),
        help="only this stream (repeatable; system lines are the gateway's own notes)",
    )  # fmt: skip
    p.add_argument("--raw", action="store_true", help="the lines as written (agent JSON unparsed)")

    for name, what in (
        ("kill", "kill a process and its whole tree (SIGTERM, then SIGKILL after the grace)"),
        ("teardown", "kill a process tree, then release what it held (ports, files); logs stay"),
    ):
        p = command(name, what)
        p.add_argument(
            "id", nargs="?", metavar="ID",
            help="the process: a process id, or a unique prefix or suffix of one",
        )  # fmt: skip
        p.add_argument("--all", action="store_true", help=f"{name} every live process")
        p.add_argument("--ticket", metavar="ID", help=f"{name} every process of this ticket")
        p.add_argument("--kind", help=f"{name} every process of this kind")

    p = command("restart", "kill a command started with run (if it runs) and start it again as a new process")
    process_id(p, "the process")

    p = command(
        "run",
        "start a supervised command: gateway run [options] -- ARGV...",
        epilog="example: gateway run --env PORT=3000 --restart on-failure -- npm run dev",
    )
    p.add_argument("--cwd", metavar="DIR", help="working directory (default: this one)")
    p.add_argument("--kind", help="the kind to record (default: command)")
    p.add_argument("--ticket", metavar="ID", help="the ticket this process works on")
    p.add_argument(
        "-e",
        "--env",
        type=key_value,
        action="append",
        metavar="KEY=VALUE",
        help="set a variable (repeatable)",
    )
    p.add_argument(
        "-l",
        "--label",
        type=key_value,
        action="append",
        metavar="KEY=VALUE",
        help="attach a label (repeatable)",
    )
    p.add_argument(
        "--restart", choices=("never", "on-failure"), default="never",
        help="restart when it fails (default: never)",
    )  # fmt: skip
    p.add_argument(
        "--max-restarts", type=non_negative, metavar="N", help="give up after N restarts (default: 3)"
    )
    p.add_argument("--max-runtime", type=positive_seconds, metavar="SECONDS", help="kill it after this long")
    p.add_argument(
        "--stall", type=positive_seconds, metavar="SECONDS", help="kill it after this long without output"
    )
    p.add_argument(
        "--grace", type=positive_seconds, metavar="SECONDS", help="SIGTERM-to-SIGKILL grace (default: 5)"
    )
    p.add_argument(
        "--events", choices=("claude", "codex"),
        help="the command is this agent CLI in its JSON mode: its log reads as a conversation",
    )  # fmt: skip
    p.add_argument(
        "-f", "--follow", action="store_true", help="then print its log until it ends (exit 1 if it failed)"
    )
    p.add_argument("argv", nargs=argparse.REMAINDER, help="the command and its arguments, after --")

    p = command("open", "print a one-time dashboard sign-in link and open a browser")
    p.add_argument("--no-browser", action="store_true", help="only print the link")
    command("token", "print the gateway token (for X-Desktop-Gateway-Token)")
    command("env", 'print shell exports of PORT, TOKEN, H and GATEWAY_URL: eval "$(gateway env)"')

    p = command("approvals", "list held requests, or decide one")
    p.add_argument("id", nargs="?", metavar="ID", help="the approval to decide")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--approve", dest="decision", action="store_const", const="approved", help="let it run"
    )
    group.add_argument(
        "--deny", dest="decision", action="store_const", const="denied", help="refuse it (403)"
    )
    group.add_argument(
        "--always", dest="decision", action="store_const", const="always_allow",
        help="let it run, and the same operation and path from the same caller for 7 days",
    )  # fmt: skip

    p = command("completion", "print a shell completion script")
    p.add_argument("shell", choices=("bash", "zsh", "tcsh"), help="the shell to complete for")

    p = command("service", "run the gateway at login as a systemd user service")
    p.add_argument("action", choices=("install", "uninstall", "status"), help="what to do with the unit")
    p.add_argument("--port", type=port_number, default=None, help="the port the service's gateway listens on")
    p.add_argument(
        "--no-enable", action="store_true", help="only write or remove the unit file (no systemctl calls)"
    )
    p.add_argument(
        "--unit-dir", metavar="DIR",
        help="where the unit goes (default: $XDG_CONFIG_HOME/systemd/user)",
    )  # fmt: skip
    return parser


CLIENT_COMMANDS: dict[str, Callable[[argparse.Namespace, Client], int]] = {
    "status": cmd_status,
    "nodes": cmd_nodes,
    "ps": cmd_ps,
    "show": cmd_show,
    "logs": cmd_logs,
    "kill": cmd_kill,
    "teardown": cmd_teardown,
    "restart": cmd_restart,
    "run": cmd_run,
    "open": cmd_open,
    "approvals": cmd_approvals,
}
LOCAL_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "node-agent": cmd_node_agent,
    "token": cmd_token,
    "env": cmd_env,
    "completion": cmd_completion,
    "service": cmd_service,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in LOCAL_COMMANDS:
            return LOCAL_COMMANDS[args.command](args)
        from gateway.http.cli_client import Client

        client = Client(args.state_dir)
        return CLIENT_COMMANDS[args.command](args, client)
    except CliError as exc:
        _fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (gateway logs ... | head): quiet, like other Unix tools.
        sys.stderr.close()
        return 0


__all__ = ["EXIT_ERROR", "EXIT_NOT_RUNNING", "build_parser", "main"]


if __name__ == "__main__":
    sys.exit(main())
