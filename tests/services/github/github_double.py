"""A GitHub double for the real ``gh``: api.github.com over TLS on loopback, through a CONNECT proxy.

``gh`` (2.23) is pointed at it with ``HTTPS_PROXY=http://127.0.0.1:<port>`` and
``SSL_CERT_FILE=<the double's certificate>``: the double accepts ``CONNECT api.github.com:443``,
answers ``200 Connection established`` and then serves the TLS itself with a self-signed
certificate for api.github.com, made at test time with the ``openssl`` CLI. Behind it, a small
GitHub: one repository with an open PR (#1) and a merged one (#2), issue comments, reviews,
inline review comments and paged files, answering the GraphQL operations and REST calls the
eight routes make, and recording every request it received.

GitHub's own rules are modelled where the routes depend on them: a line comment on a line
outside the PR's diff is a 422 ``pull_request_review_thread.line must be part of the diff``, a
comment on a file outside the PR is a 422 too, a reply to a reply is a 422, a wrong token is a
401 ``Bad credentials``. Runs in threads (``ThreadingHTTPServer``), so it answers while the test's
trio loop waits on the gateway.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

OWNER, REPO = "OWNER", "REPO"
TOKEN = "gho_double_token"
PAGE = 2  # small pages, so every list the routes read takes several
HEAD_SHA = "a" * 40
REPLY_TO_REPLY = "in_reply_to_id cannot be a reply; reply to the thread's first comment"
MERGED_SHA = "b" * 40


@dataclass
class Received:
    """One request the double answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    operation: str | None = None  # GraphQL operation name
    variables: dict[str, Any] = field(default_factory=dict)
    status: int = 200


def make_certificate(where: Path) -> tuple[Path, Path]:
    """A self-signed certificate for api.github.com (and github.com): (cert, key)."""
    cert, key = where / "github-double.pem", where / "github-double.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=api.github.com",
            "-addext",
            "subjectAltName=DNS:api.github.com,DNS:github.com",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _user(login: str) -> dict[str, Any]:
    return {"login": login, "id": f"U_{login}", "name": login.title()}


class GitHubState:
    """The one repository the double knows, as GitHub would hold it."""

    def __init__(self) -> None:
        self.next_id = 5000
        self.empty_branches = set()
        self.prs: dict[int, dict[str, Any]] = {
            1: {
                "number": 1,
                "title": "Add the feature",
                "state": "OPEN",
                "headRefName": "feature",
                "baseRefName": "main",
                "createdAt": "2026-11-20T10:00:00Z",
                "author": "alice",
                "reviewDecision": "CHANGES_REQUESTED",
                "head_sha": HEAD_SHA,
            },
            2: {
                "number": 2,
                "title": "Fix the bug",
                "state": "MERGED",
                "headRefName": "bugfix",
                "baseRefName": "main",
                "createdAt": "2026-11-10T10:00:00Z",
                "author": "bob",
                "reviewDecision": "APPROVED",
                "head_sha": MERGED_SHA,
            },
        }
        self.issue_comments: dict[int, list[dict[str, Any]]] = {
            1: [
                {
                    "id": "IC_kwDOissue1",
                    "author": "carol",
                    "body": "Looks promising",
                    "createdAt": "2026-11-20T11:00:00Z",
                    "url": f"https://github.com/{OWNER}/{REPO}/pull/1#issuecomment-11",
                },
            ],
            2: [],
        }
        self.reviews: dict[int, list[dict[str, Any]]] = {
            1: [
                {
                    "id": "PRR_r1",
                    "author": "dave",
                    "state": "COMMENTED",
                    "body": "",
                    "submittedAt": "2026-11-20T12:00:00Z",
                },
                {
                    "id": "PRR_r2",
                    "author": "dave",
                    "state": "APPROVED",
                    "body": "Ship it",
                    "submittedAt": "2026-11-21T09:00:00Z",
                },
                {
                    "id": "PRR_r3",
                    "author": "erin",
                    "state": "CHANGES_REQUESTED",
                    "body": "Please rename",
                    "submittedAt": "2026-11-20T15:00:00Z",
                },
                {
                    "id": "PRR_r4",
                    "author": "frank",
                    "state": "CHANGES_REQUESTED",
                    "body": "",
                    "submittedAt": "2026-11-20T13:00:00Z",
                },
                {
                    "id": "PRR_r5",
                    "author": "frank",
                    "state": "COMMENTED",
                    "body": "",
                    "submittedAt": "2026-11-20T16:00:00Z",
                },
            ],
            2: [],
        }
        # REST pull request review comments; original_line wins over line (ClosedLoop's rule).
        self.review_comments: dict[int, list[dict[str, Any]]] = {
            1: [
                {
                    "id": 101,
                    "user": "erin",
                    "body": "Rename this",
                    "path": "src/app.py",
                    "line": 4,
                    "original_line": 3,
                    "created_at": "2026-11-20T14:00:00Z",
                    "in_reply_to_id": None,
                },
                {
                    "id": 102,
                    "user": "alice",
                    "body": "Done",
                    "path": "src/app.py",
                    "line": 4,
                    "original_line": None,
                    "created_at": "2026-11-20T14:30:00Z",
                    "in_reply_to_id": 101,
                },
                {
                    "id": 103,
                    "user": "dave",
                    "body": "Nice",
                    "path": "README.md",
                    "line": None,
                    "original_line": None,
                    "created_at": "2026-11-19T09:00:00Z",
                    "in_reply_to_id": None,
                },
            ],
            2: [],
        }
        # The files each PR changes, and for each the right-side lines inside the diff.
        self.files: dict[int, dict[str, set[int]]] = {
            1: {
                "src/app.py": set(range(1, 11)),
                "README.md": {1, 2},
                "docs/a b.md": {1},
                "src/util.py": {5},
                "tests/test_app.py": set(range(1, 30)),
            },
            2: {"fix.py": {1}},
        }

    #: Branches with no commits on top of the base: GitHub refuses a PR for them.
    empty_branches: set[str]

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def pr_url(self, number: int) -> str:
        return f"https://github.com/{OWNER}/{REPO}/pull/{number}"

    def pr_node(self, number: int) -> dict[str, Any]:
        pr = self.prs[number]
        comments = [
            {
                "id": c["id"],
                "author": _user(c["author"]),
                "authorAssociation": "MEMBER",
                "body": c["body"],
                "createdAt": c["createdAt"],
                "includesCreatedEdit": False,
                "isMinimized": False,
                "minimizedReason": "",
                "reactionGroups": [],
                "url": c["url"],
                "viewerDidAuthor": False,
            }
            for c in self.issue_comments[number]
        ]
        reviews = [
            {
                "id": r["id"],
                "author": {"login": r["author"]},
                "authorAssociation": "MEMBER",
                "submittedAt": r["submittedAt"],
                "body": r["body"],
                "state": r["state"],
                "commit": {"oid": pr["head_sha"]},
                "reactionGroups": [],
            }
            for r in self.reviews[number]
        ]
        page = {"hasNextPage": False, "endCursor": None}
        return {
            "id": f"PR_node{number}",
            "number": number,
            "url": self.pr_url(number),
            "title": pr["title"],
            "state": pr["state"],
            "createdAt": pr["createdAt"],
            "headRefName": pr["headRefName"],
            "baseRefName": pr["baseRefName"],
            "isCrossRepository": False,
            "headRepositoryOwner": {"id": "U_owner", "login": OWNER, "name": OWNER},
            "author": _user(pr["author"]),
            "reviewDecision": pr["reviewDecision"],
            "comments": {"nodes": comments, "pageInfo": page, "totalCount": len(comments)},
            "reviews": {"nodes": reviews, "pageInfo": page, "totalCount": len(reviews)},
        }

    def rest_comment(self, number: int, c: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": c["id"],
            "node_id": f"PRRC_{c['id']}",
            "user": {"login": c["user"]},
            "body": c["body"],
            "path": c["path"],
            "line": c["line"],
            "original_line": c["original_line"],
            "created_at": c["created_at"],
            "html_url": f"{self.pr_url(number)}#discussion_r{c['id']}",
            "in_reply_to_id": c["in_reply_to_id"],
            "commit_id": c.get("commit_id", HEAD_SHA),
        }


class GitHubDouble:
    """Start with ``with GitHubDouble(tmp) as gh:``; ``gh.env()`` is what the gh children need."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cert, self.key = make_certificate(tmp)
        self.state = GitHubState()
        self.received: list[Received] = []
        self.lock = threading.Lock()
        # A request whose path is ``hold_path`` waits (unanswered) until ``release`` is set.
        self.hold_path: str | None = None
        self.held = threading.Event()
        self.release = threading.Event()
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(str(self.cert), str(self.key))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> GitHubDouble:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def env(self, config_dir: Path, token: str | None = TOKEN) -> dict[str, str]:
        out = {"GH_CONFIG_DIR": str(config_dir), "SSL_CERT_FILE": str(self.cert), "HTTPS_PROXY": self.proxy}
        if token is not None:
            out["GH_TOKEN"] = token
        return out

    def calls(self, method: str | None = None, path: str | None = None) -> list[Received]:
        with self.lock:
            return [
                r
                for r in self.received
                if (method is None or r.method == method) and (path is None or r.path == path)
            ]

    def graphql(self, operation: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.operation == operation]

    def clear(self) -> None:
        with self.lock:
            self.received.clear()

    # ---- answering ----------------------------------------------------------------------------

    def answer(self, got: Received) -> tuple[int, Any, dict[str, str]]:
        if got.headers.get("authorization") != f"token {TOKEN}":
            return (
                401,
                {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"},
                {},
            )
        if got.method == "POST" and got.path == "/graphql":
            return 200, self.answer_graphql(got), {}
        return self.answer_rest(got)

    def answer_graphql(self, got: Received) -> dict[str, Any]:
        s, v, op = self.state, got.variables, got.operation
        if op == "PullRequestByNumber":
            number = v.get("pr_number")
            if number not in s.prs:
                return {
                    "data": {"repository": {"pullRequest": None}},
                    "errors": [
                        {
                            "type": "NOT_FOUND",
                            "path": ["repository", "pullRequest"],
                            "message": f"Could not resolve to a PullRequest with the number of {number}.",
                        }
                    ],
                }
            return {"data": {"repository": {"pullRequest": s.pr_node(number)}}}
        if op == "PullRequestList":
            states = v.get("state") or ["OPEN"]
            nodes = [s.pr_node(n) for n in sorted(s.prs, reverse=True) if s.prs[n]["state"] in states]
            nodes = nodes[: v.get("limit", 30)]
            return {
                "data": {
                    "repository": {
                        "pullRequests": {
                            "totalCount": len(nodes),
                            "nodes": nodes,
                            "pageInfo": {"hasNextPage": False, "endCursor": None},
                        }
                    }
                }
            }
        if op == "RepositoryInfo":
            repo = {
                "id": "R_repo",
                "name": REPO,
                "owner": {"login": OWNER},
                "hasIssuesEnabled": True,
                "description": "",
                "hasWikiEnabled": False,
                "viewerPermission": "ADMIN",
                "defaultBranchRef": {"name": "main"},
            }
            return {
                "data": {
                    "repository": {
                        **repo,
                        "parent": None,
                        "mergeCommitAllowed": True,
                        "rebaseMergeAllowed": True,
                        "squashMergeAllowed": True,
                    }
                }
            }
        if op == "PullRequestForBranch":
            nodes = [
                s.pr_node(n)
                for n in sorted(s.prs, reverse=True)
                if s.prs[n]["headRefName"] == v.get("headRefName")
                and (not v.get("states") or s.prs[n]["state"] in v["states"])
            ]
            return {
                "data": {
                    "repository": {"pullRequests": {"nodes": nodes}, "defaultBranchRef": {"name": "main"}}
                }
            }
        if op == "PullRequestCreate":
            given = v.get("input", {})
            if given.get("headRefName") in s.empty_branches:
                message = f"No commits between {given.get('baseRefName')} and {given.get('headRefName')}"
                return {
                    "data": {"createPullRequest": None},
                    "errors": [{"type": "UNPROCESSABLE", "path": ["createPullRequest"], "message": message}],
                }
            number = max(s.prs) + 1
            s.prs[number] = {
                "number": number,
                "title": given.get("title"),
                "state": "OPEN",
                "headRefName": given.get("headRefName"),
                "baseRefName": given.get("baseRefName"),
                "createdAt": "2026-12-01T10:00:00Z",
                "author": "viewer",
                "reviewDecision": None,
                "head_sha": HEAD_SHA,
                "body": given.get("body"),
            }
            s.issue_comments[number], s.reviews[number], s.review_comments[number] = [], [], []
            s.files[number] = {}
            return {"data": {"createPullRequest": {"pullRequest": s.pr_node(number)}}}
        if op == "CommentCreate":
            given = v.get("input", {})
            number = int(str(given.get("subjectId", "")).removeprefix("PR_node") or 0)
            cid = s.new_id()
            url = f"{s.pr_url(number)}#issuecomment-{cid}"
            s.issue_comments.setdefault(number, []).append(
                {
                    "id": f"IC_new{cid}",
                    "author": "viewer",
                    "body": given.get("body"),
                    "createdAt": "2026-12-01T12:00:00Z",
                    "url": url,
                }
            )
            return {"data": {"addComment": {"commentEdge": {"node": {"url": url}}}}}
        if op == "PullRequestReviewAdd":
            given = v.get("input", {})
            number = int(str(given.get("pullRequestId", "")).removeprefix("PR_node") or 0)
            s.reviews.setdefault(number, []).append(
                {
                    "id": f"PRR_new{s.new_id()}",
                    "author": "viewer",
                    "state": "CHANGES_REQUESTED",
                    "body": given.get("body"),
                    "submittedAt": "2026-12-01T12:00:00Z",
                }
            )
            return {"data": {"addPullRequestReview": {"clientMutationId": None}}}
        return {"errors": [{"message": f"the GitHub double does not know the operation {op!r}"}]}

    def answer_rest(self, got: Received) -> tuple[int, Any, dict[str, str]]:
        s = self.state
        m = re.fullmatch(rf"/repos/{OWNER}/{REPO}/pulls/(\d+)(/.*)?", got.path)
        if m is None or int(m[1]) not in s.prs:
            return 404, {"message": "Not Found"}, {}
        number, rest = int(m[1]), m[2] or ""
        if got.method == "GET" and rest == "":
            pr = s.prs[number]
            return (
                200,
                {
                    "number": number,
                    "state": pr["state"].lower(),
                    "head": {"sha": pr["head_sha"], "ref": pr["headRefName"]},
                    "base": {"ref": pr["baseRefName"]},
                },
                {},
            )
        if got.method == "GET" and rest == "/comments":
            rows = [s.rest_comment(number, c) for c in s.review_comments[number]]
            return self.page(got, rows)
        if got.method == "GET" and rest == "/files":
            rows = [
                {"filename": f, "status": "modified", "additions": 1, "deletions": 0} for f in s.files[number]
            ]
            return self.page(got, rows)
        if got.method == "POST" and rest == "/comments":
            return self.new_review_comment(number, got.body or {})
        r = re.fullmatch(r"/comments/(\d+)/replies", rest)
        if got.method == "POST" and r:
            parent = next((c for c in s.review_comments[number] if c["id"] == int(r[1])), None)
            if parent is None:
                return 404, {"message": "Not Found"}, {}
            if parent["in_reply_to_id"] is not None:
                return (
                    422,
                    {
                        "message": "Validation Failed",
                        "errors": [
                            {
                                "resource": "PullRequestReviewComment",
                                "code": "custom",
                                "field": "in_reply_to_id",
                                "message": REPLY_TO_REPLY,
                            }
                        ],
                    },
                    {},
                )
            row = {
                "id": s.new_id(),
                "user": "viewer",
                "body": (got.body or {}).get("body"),
                "path": parent["path"],
                "line": parent["line"],
                "original_line": parent["original_line"],
                "created_at": "2026-12-01T12:00:00Z",
                "in_reply_to_id": parent["id"],
            }
            s.review_comments[number].append(row)
            return 201, s.rest_comment(number, row), {}
        return 404, {"message": "Not Found"}, {}

    def new_review_comment(self, number: int, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        s = self.state
        path, line = body.get("path"), body.get("line")
        if path not in s.files[number]:
            return (
                422,
                {
                    "message": "Validation Failed",
                    "errors": [
                        {
                            "resource": "PullRequestReviewComment",
                            "code": "custom",
                            "field": "pull_request_review_thread.path",
                            "message": "pull_request_review_thread.path is not part of the pull request",
                        }
                    ],
                },
                {},
            )
        if line is not None and line not in s.files[number][path]:
            return (
                422,
                {
                    "message": "Validation Failed",
                    "errors": [
                        {
                            "resource": "PullRequestReviewComment",
                            "code": "custom",
                            "field": "pull_request_review_thread.line",
                            "message": "pull_request_review_thread.line must be part of the diff",
                        }
                    ],
                },
                {},
            )
        row = {
            "id": s.new_id(),
            "user": "viewer",
            "body": body.get("body"),
            "path": path,
            "line": line,
            "original_line": line,
            "created_at": "2026-12-01T12:00:00Z",
            "in_reply_to_id": None,
            "commit_id": body.get("commit_id"),
        }
        s.review_comments[number].append(row)
        return 201, s.rest_comment(number, row), {}

    def page(self, got: Received, rows: list[Any]) -> tuple[int, Any, dict[str, str]]:
        """GitHub's paging: ``?page=N`` and a ``Link: <...>; rel="next"`` header while more remain."""
        page = int((got.query.get("page") or ["1"])[0])
        chunk = rows[(page - 1) * PAGE : page * PAGE]
        headers = {}
        if page * PAGE < len(rows):
            headers["Link"] = (
                f'<https://api.github.com{got.path}?per_page={PAGE}&page={page + 1}>; rel="next"'
            )
        return 200, chunk, headers


def _handler(double: GitHubDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_CONNECT(self) -> None:
            if self.path != "api.github.com:443":
                self.send_error(403, "the GitHub double only tunnels to api.github.com:443")
                return
            self.send_response(200, "Connection established")
            self.end_headers()
            try:
                tls = double.tls.wrap_socket(self.connection, server_side=True)
            except (ssl.SSLError, OSError):
                self.close_connection = True
                return
            self.connection = tls
            self.rfile = tls.makefile("rb")
            self.wfile = tls.makefile("wb")
            self.close_connection = False
            try:
                while not self.close_connection:
                    self.handle_one_request()
            except (OSError, ssl.SSLError):  # the client (a killed gh) went away
                self.close_connection = True

        def handle_api(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                body = raw.decode("utf-8", "replace")
            split = urlsplit(self.path)
            got = Received(
                self.command,
                split.path,
                parse_qs(split.query),
                {k.lower(): v for k, v in self.headers.items()},
                body,
            )
            if split.path == "/graphql" and isinstance(body, dict):
                named = re.search(r"\b(?:query|mutation)\s+(\w+)", body.get("query", ""))
                got.operation = named[1] if named else None
                got.variables = body.get("variables") or {}
            if double.hold_path == split.path:
                double.held.set()
                double.release.wait(60)
            with double.lock:
                status, payload, headers = double.answer(got)
                got.status = status
                double.received.append(got)
            out = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(out)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = handle_api

    return Handler
