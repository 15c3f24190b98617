"""Pull requests over HTTP: the eight ``git/pr`` routes (operation ``git_pr``) over the real ``gh``.

Requests and answers are ClosedLoop's (``closedloop-ai/closedloop-electron``
``apps/desktop/src/server/operations/git-pr.ts``, read by the web app's
``apps/app/lib/engineer/queries/git.ts`` and PR components): repositories are named by path
(``?repo=`` or body ``repoPath``), reviews by ``owner``/``repo``/``number``. Bodies are read as
ClosedLoop reads them (numbers may be strings; the service checks each field and names it).
Errors use ClosedLoop's envelope ``{"error": "<message>", "code", "details"?}``
(``gateway.http.errors.wire_error_response``), since its clients do ``new Error(data.error)``.
The work is ``gateway.supervisor.services.github.PullRequests``.
"""

from __future__ import annotations

import json
from typing import Any

from quart import Blueprint, request
from quart_schema import document_querystring, document_request, document_response

from gateway.http.errors import wire_error_response
from gateway.http.routes.common import services
from gateway.http.schemas.pr import (
    CommentsOut,
    CreateIn,
    CreateOut,
    FilesOut,
    HeadShaOut,
    InlineCommentIn,
    InlineCommentOut,
    ListOut,
    ListQuery,
    PrErrorOut,
    ReplyIn,
    ReplyOut,
    RepoPrQuery,
    ReviewsOut,
    ReviewsQuery,
)
from gateway.supervisor.errors import GatewayError
from gateway.supervisor.services.github import bad_request

bp = Blueprint("git_pr", __name__, url_prefix="/api/gateway/git/pr")
bp.register_error_handler(GatewayError, wire_error_response)


async def _body() -> dict[str, Any]:
    """The JSON object body; an empty body is ``{}`` (ClosedLoop's ``parseBody``)."""
    raw = await request.get_data()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request("Invalid JSON body") from None
    if not isinstance(data, dict):
        raise bad_request("Invalid JSON body: expected an object")
    return data


def _arg(name: str) -> str | None:
    return request.args.get(name) or None


@bp.post("")
@document_request(CreateIn)
@document_response(CreateOut)
@document_response(PrErrorOut, 400)
@document_response(PrErrorOut, 403)
@document_response(PrErrorOut, 422)
@document_response(PrErrorOut, 503)
async def create_pr() -> dict[str, Any]:
    """Push the current branch of ``repoPath`` and open its PR (or answer the existing one)."""
    return await services().pulls.create(await _body())


@bp.get("/list")
@document_querystring(ListQuery)
@document_response(ListOut)
@document_response(PrErrorOut, 400)
@document_response(PrErrorOut, 403)
@document_response(PrErrorOut, 422)
@document_response(PrErrorOut, 503)
async def list_prs() -> dict[str, Any]:
    """``?repo=<path>&state=open|merged``: the latest 50 PRs."""
    return await services().pulls.list(_arg("repo"), _arg("state"))


@bp.get("/comments")
@document_querystring(RepoPrQuery)
@document_response(CommentsOut)
@document_response(PrErrorOut, 400)
@document_response(PrErrorOut, 403)
@document_response(PrErrorOut, 422)
@document_response(PrErrorOut, 503)
async def pr_comments() -> dict[str, Any]:
    """``?repo=<path>&pr=<n>``: issue comments, review bodies and inline comments, newest first."""
    return await services().pulls.comments(_arg("repo"), _arg("pr"))


@bp.get("/reviews")
@document_querystring(ReviewsQuery)
@document_response(ReviewsOut)
@document_response(PrErrorOut, 400)
@document_response(PrErrorOut, 403)
@document_response(PrErrorOut, 422)
@document_response(PrErrorOut, 503)
async def pr_reviews() -> dict[str, Any]:
    """``?owner&repo&number``: latest review per author, counts and the review decision."""
    return await services().pulls.reviews(_arg("owner"), _arg("repo"), _arg("number"))


@bp.post("/reply")
@document_request(ReplyIn)
@document_response(ReplyOut)
@document_response(PrErrorOut, 400)
@document_response(PrErrorOut, 403)
@document_response(PrErrorOut, 422)
@document_response(PrErrorOut, 503)
async def pr_reply() -> dict[str, Any]:
    """``{repoPath, prNumber, body, commentId?, requestChanges?}``."""
    return await services().pulls.reply(await _body())


@bp.get("/files")
@document_querystring(RepoPrQuery)
@document_response(FilesOut)
@document_response(PrErrorOut, 400)
@document_response(PrErrorOut, 403)
@document_response(PrErrorOut, 422)
@document_response(PrErrorOut, 503)
async def pr_files() -> dict[str, Any]:
    """``?repo=<path>&pr=<n>``: the names of the files the PR changes."""
    return await services().pulls.files(_arg("repo"), _arg("pr"))


@bp.get("/head-sha")
@document_querystring(RepoPrQuery)
@document_response(HeadShaOut)
@document_response(PrErrorOut, 400)
@document_response(PrErrorOut, 403)
@document_response(PrErrorOut, 422)
@document_response(PrErrorOut, 503)
async def pr_head_sha() -> dict[str, Any]:
    """``?repo=<path>&pr=<n>``: the PR's head commit."""
    return await services().pulls.head_sha(_arg("repo"), _arg("pr"))


@bp.post("/inline-comment")
@document_request(InlineCommentIn)
@document_response(InlineCommentOut)
@document_response(PrErrorOut, 400)
@document_response(PrErrorOut, 403)
@document_response(PrErrorOut, 422)
@document_response(PrErrorOut, 503)
async def pr_inline_comment() -> dict[str, Any]:
    """``{repoPath, prNumber, body, path?, line?, commitSha?}``: line, else file, else general."""
    return await services().pulls.inline_comment(await _body())
