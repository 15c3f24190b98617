"""Auth exchange, challenge minting, approvals, policy and metrics (``gateway_admin``).

The exchange is public but loopback-only, and answers the same 403 for a wrong, used or expired
challenge: it never reveals whether a challenge existed. Minting needs the gateway token (a
browser session must not be able to mint itself new sessions forever).
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request
from quart_schema import document_response, validate_request

from gateway.http.auth import is_loopback_addr
from gateway.http.context import current_gateway
from gateway.http.errors import ApiError
from gateway.http.guard import current_admission
from gateway.http.operations import Tier
from gateway.http.schemas.core import (
    ApprovalListOut,
    ApprovalOut,
    ChallengeOut,
    DecisionIn,
    ExchangeIn,
    ExchangeOut,
    PolicyIn,
    PolicyOut,
    RuleIn,
    RuleOut,
)
from gateway.http.streams import approvals_stream, ndjson_response
from gateway.supervisor import iso

public = Blueprint("auth_public", __name__)
bp = Blueprint("admin", __name__, url_prefix="/api/gateway")


@public.post("/gateway-auth/exchange")
@validate_request(ExchangeIn)
@document_response(ExchangeOut)
async def exchange(data: ExchangeIn) -> dict[str, Any]:
    """Trade a one-time challenge for a session token (loopback peers only)."""
    gw = current_gateway()
    if not is_loopback_addr(request.remote_addr):
        raise ApiError(403, "loopback_only", "the exchange answers loopback peers only")
    traded = gw.auth.exchange(data.challenge)
    if traded is None:
        raise ApiError(403, "exchange_failed", "challenge invalid, used or expired")
    token, expires = traded
    return {"sessionToken": token, "expiresAt": iso(expires)}


@bp.post("/auth/challenge")
@document_response(ChallengeOut)
async def mint_challenge() -> dict[str, Any]:
    """A one-time challenge (60 s) for ``gateway open``; gateway token only."""
    gw = current_gateway()
    if current_admission().principal != "gateway":
        raise ApiError(403, "gateway_token_required", "minting needs the gateway token")
    challenge, expires = gw.auth.mint_challenge()
    return {
        "challenge": challenge,
        "expiresAt": iso(expires),
        "exchangeUrl": f"http://127.0.0.1:{gw.port}/gateway-auth/exchange",
    }


# ---- approvals ----------------------------------------------------------------------------


@bp.get("/approvals")
@document_response(ApprovalListOut)
async def list_approvals() -> dict[str, Any]:
    """Pending requests (``?all=1`` adds the 50 most recent outcomes)."""
    gw = current_gateway()
    items = list(gw.approvals.pending.values())
    if request.args.get("all") in ("1", "true"):
        items = [*gw.approvals.recent, *items]
    return {"approvals": [a.to_json() for a in items]}


@bp.get("/approvals/stream")
async def stream_approvals() -> Response:
    """NDJSON ``approvals`` lines (the whole list) now and on every change: the dashboard's feed."""
    gw = current_gateway()
    return ndjson_response(approvals_stream(gw))


@bp.post("/approvals/<approvalId>")
@validate_request(DecisionIn)
@document_response(ApprovalOut)
async def decide(approvalId: str, data: DecisionIn) -> dict[str, Any]:
    """``approved`` / ``denied`` / ``always_allow`` (adds an allow rule, 7 days by default)."""
    gw = current_gateway()
    decided = await gw.approvals.decide(approvalId, data.decision, data.ttl_seconds)
    if decided is None:
        known = gw.approvals.find(approvalId)
        if known is None:
            raise ApiError(404, "approval_not_found", f"no approval {approvalId[:100]}")
        raise ApiError(409, "approval_not_pending", f"approval is {known.outcome}")
    return decided.to_json()


# ---- policy -------------------------------------------------------------------------------


@bp.get("/policy")
@document_response(PolicyOut)
async def get_policy() -> dict[str, Any]:
    return current_gateway().policy.to_json()


@bp.put("/policy")
@validate_request(PolicyIn)
@document_response(PolicyOut)
async def put_policy(data: PolicyIn) -> dict[str, Any]:
    """Per-principal threshold: the highest tier that runs without asking (``none`` = ask all)."""
    gw = current_gateway()
    values = {
        p: Tier.parse(v) for p, v in data.thresholds.model_dump().items() if v is not None
    }
    await gw.policy.set_thresholds(values)
    return gw.policy.to_json()


@bp.post("/policy/rules")
@validate_request(RuleIn)
@document_response(RuleOut, 201)
async def add_rule(data: RuleIn) -> tuple[dict[str, Any], int]:
    gw = current_gateway()
    rule = await gw.policy.add_rule(
        data.effect,
        principal=data.principal,
        operation=data.operation,
        method=data.method,
        path_prefix=data.path_prefix,
        ttl=data.ttl_seconds,
    )
    return rule.to_json(), 201


@bp.delete("/policy/rules/<ruleId>")
async def delete_rule(ruleId: str) -> dict[str, Any]:
    if not await current_gateway().policy.remove_rule(ruleId):
        raise ApiError(404, "rule_not_found", f"no rule {ruleId[:100]}")
    return {"deleted": ruleId}


# ---- metrics ------------------------------------------------------------------------------


@bp.get("/metrics")
async def metrics() -> Response:
    """Prometheus text format."""
    body = current_gateway().metrics.render()
    return Response(body, content_type="text/plain; version=0.0.4; charset=utf-8")
