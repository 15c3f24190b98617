"""ClosedLoop's loop request (``POST symphony/loop``): its checks, in ClosedLoop's order.

The relay hands the gateway the body the ClosedLoop cloud built (``LoopRequestBody``,
closedloop-ai/closedloop-ai ``packages/loops-api/src/desktop-request.ts``, extended by the
desktop in ``apps/desktop/src/server/operations/symphony-loop-request.ts``) and reads the status
and ``error`` string of the answer. ``check_loop_request`` raises ``LoopRequestError`` with
ClosedLoop's exact message for the first failed check (``symphony-loop.ts``
``handleLoopRequest``); what needs the repos (resolution, 403/404) and the running loops (409)
is the service's. Pure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

UUID = re.compile(r"^[\da-f]{8}-[\da-f]{4}-[\da-f]{4}-[\da-f]{4}-[\da-f]{12}$", re.IGNORECASE)
OWNER_REPO = re.compile(r"^[a-zA-Z0-9._-]+/[a-zA-Z0-9._-]+$")

#: Commands the desktop gateway accepts (newest ``SUPPORTED_COMMANDS``); CHAT, EXPLORE and MANUAL
#: are known to ClosedLoop but refused here too.
COMMANDS = (
    "PLAN", "EXECUTE", "REQUEST_CHANGES", "REQUEST_PRD_CHANGES", "DECOMPOSE", "EVALUATE_PRD",
    "GENERATE_PRD", "EVALUATE_PLAN", "EVALUATE_CODE", "EVALUATE_FEATURE", "BOOTSTRAP",
)  # fmt: skip
#: Commands that run with the agent alone; the rest need ClosedLoop's plugin scripts.
EVALUATE_COMMANDS = ("EVALUATE_PRD", "EVALUATE_PLAN", "EVALUATE_CODE", "EVALUATE_FEATURE")

RepoNeed = Literal["REQUIRED", "OPTIONAL", "NOT_REQUIRED"]
REPO_NEED: dict[str, RepoNeed] = {
    "PLAN": "REQUIRED", "EXECUTE": "REQUIRED", "REQUEST_CHANGES": "REQUIRED",
    "REQUEST_PRD_CHANGES": "REQUIRED", "EVALUATE_PRD": "OPTIONAL", "GENERATE_PRD": "REQUIRED",
    "DECOMPOSE": "NOT_REQUIRED", "EVALUATE_PLAN": "REQUIRED", "EVALUATE_CODE": "REQUIRED",
    "EVALUATE_FEATURE": "OPTIONAL", "BOOTSTRAP": "NOT_REQUIRED",
}  # fmt: skip

# (prompt, artifacts, prompt-or-artifacts) per command (``CommandInputRequirements``).
_INPUTS: dict[str, tuple[bool, bool, bool]] = {
    "PLAN": (False, False, False), "EXECUTE": (False, False, True),
    "REQUEST_CHANGES": (True, False, False), "REQUEST_PRD_CHANGES": (True, True, False),
    "DECOMPOSE": (False, True, False), "GENERATE_PRD": (True, False, False),
    "EVALUATE_PRD": (False, True, False), "EVALUATE_PLAN": (False, True, False),
    "EVALUATE_CODE": (False, True, False), "EVALUATE_FEATURE": (False, True, False),
    "BOOTSTRAP": (False, False, False),
}  # fmt: skip

#: The artifact file each EVALUATE command writes and the key it is uploaded under.
JUDGES_OUTPUT = {
    "EVALUATE_PRD": ("prd", "prd-judges.json", "prdJudges"),
    "EVALUATE_PLAN": ("plan", "plan-judges.json", "planJudges"),
    "EVALUATE_CODE": ("code", "code-judges.json", "codeJudges"),
    "EVALUATE_FEATURE": ("feature", "feature-judges.json", "featureJudges"),
}


class LoopRequestError(ValueError):
    """A loop request ClosedLoop answers 400 with this message."""


@dataclass(frozen=True, slots=True)
class Artifact:
    id: str
    type: str
    title: str
    content: str


@dataclass(frozen=True, slots=True)
class LoopRequest:
    """The fields of a checked request that this gateway acts on (the rest is ignored)."""

    loop_id: str
    command: str
    token: str
    artifacts: tuple[Artifact, ...]
    prompt: str | None
    local_repo_path: str | None
    repo_full_name: str | None
    repo_branch: str | None
    primary_artifact_id: str | None
    harness: str
    user_context: str | None

    @property
    def repo_need(self) -> RepoNeed:
        return REPO_NEED[self.command]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _malformed(field: str, detail: str) -> LoopRequestError:
    return LoopRequestError(f"{field} is malformed: {detail}")


def _check_extensions(body: dict[str, Any]) -> None:
    """The desktop's extension fields, each checked only when present (``parseSymphonyLoopRequestBody``)."""
    supporting = body.get("supportingArtifacts")
    if supporting is not None:
        if not isinstance(supporting, list):
            raise _malformed("supportingArtifacts", "value: expected array")
        for i, item in enumerate(supporting):
            if not isinstance(item, dict) or not isinstance(item.get("content"), str):
                raise _malformed("supportingArtifacts", f"{i}.content: expected string")
    context = body.get("codeEvaluationContext")
    if context is not None and not isinstance(context, dict):
        raise _malformed("codeEvaluationContext", "value: expected object")
    materialization = body.get("branchMaterialization")
    if materialization is not None:
        branches = materialization.get("branches") if isinstance(materialization, dict) else None
        if not isinstance(branches, list) or not branches or materialization.get("schemaVersion") != 1:
            raise _malformed("branchMaterialization", "value: expected {schemaVersion: 1, branches: [...]}")
        for i, entry in enumerate(branches):
            name = entry.get("repositoryFullName") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not OWNER_REPO.match(name.strip()):
                raise _malformed(
                    "branchMaterialization",
                    f"branches.{i}.repositoryFullName: Must be in 'owner/repo' format",
                )
    token = body.get("cloudSessionToken")
    if token is not None and (not isinstance(token, str) or len(token.strip()) > 4096):
        raise _malformed("cloudSessionToken", "value: expected a string of at most 4096 characters")


def _artifacts(raw: list[Any]) -> tuple[Artifact, ...]:
    out = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        out.append(
            Artifact(
                id=str(item.get("id") or ""),
                type=str(item.get("type") or ""),
                title=str(item.get("title") or ""),
                content=str(item["content"]) if isinstance(item.get("content"), str) else "",
            )
        )
    return tuple(out)


def _inputs_error(command: str, has_prompt: bool, has_artifacts: bool) -> str | None:
    prompt, artifacts, either = _INPUTS[command]
    if prompt and not has_prompt:
        return f"{command} requires a non-empty prompt"
    if artifacts and not has_artifacts:
        return f"{command} requires artifacts in the context pack"
    if either and not has_prompt and not has_artifacts:
        return f"{command} requires either a prompt or artifacts in the context pack"
    return None


def check_loop_request(body: Any) -> LoopRequest:
    """ClosedLoop's checks 3 to 9 (``handleLoopRequest``), first failure first."""
    if not isinstance(body, dict):
        raise LoopRequestError("Invalid JSON body")
    _check_extensions(body)
    loop_id, command, token = body.get("loopId"), body.get("command"), body.get("closedLoopAuthToken")
    if not (
        isinstance(loop_id, str)
        and loop_id
        and isinstance(command, str)
        and command
        and isinstance(token, str)
        and token
    ):
        raise LoopRequestError("Missing required fields: loopId, command, closedLoopAuthToken")
    if command not in COMMANDS:
        raise LoopRequestError(f"Invalid command: {command}")
    if not UUID.match(loop_id):
        raise LoopRequestError("loopId must be a valid UUID")
    raw_artifacts = body.get("artifacts")
    if not isinstance(raw_artifacts, list):
        raise LoopRequestError("artifacts must be an array")
    prompt = _text(body.get("prompt"))
    error = _inputs_error(command, prompt is not None, len(raw_artifacts) > 0)
    if error:
        raise LoopRequestError(error)
    artifacts = _artifacts(raw_artifacts)
    raw_repo = body.get("repo")
    repo: dict[str, Any] = raw_repo if isinstance(raw_repo, dict) else {}
    full_name = _text(repo.get("fullName"))
    local = _text(body.get("localRepoPath"))
    types = {a.type for a in artifacts}
    if command == "EVALUATE_PLAN":
        if not (("PRD" in types or "FEATURE" in types or prompt) and "IMPLEMENTATION_PLAN" in types):
            raise LoopRequestError(
                "EVALUATE_PLAN requires a PRD artifact (or prompt) and an implementation plan artifact"
            )
        if not (local or full_name):
            raise LoopRequestError("EVALUATE_PLAN requires a repository (repo.fullName or localRepoPath)")
    if command == "EVALUATE_CODE":
        if "IMPLEMENTATION_PLAN" not in types:
            raise LoopRequestError("EVALUATE_CODE requires an implementation plan artifact")
        if not (local or full_name):
            raise LoopRequestError("EVALUATE_CODE requires a repository (repo.fullName or localRepoPath)")
    if command == "EVALUATE_FEATURE" and "FEATURE" not in types:
        raise LoopRequestError("EVALUATE_FEATURE requires a feature artifact")
    if command == "BOOTSTRAP" and not _bootstrap_repos(prompt):
        raise LoopRequestError("BOOTSTRAP requires a JSON prompt with a non-empty repos array")
    harness = body.get("harness")
    return LoopRequest(
        loop_id=loop_id,
        command=command,
        token=token,
        artifacts=artifacts,
        prompt=prompt,
        local_repo_path=local,
        repo_full_name=full_name,
        repo_branch=_text(repo.get("branch")),
        primary_artifact_id=_text(body.get("primaryArtifactId")),
        harness=harness if harness in ("claude", "codex") else "claude",
        user_context=_text(body.get("userContext")),
    )


def _bootstrap_repos(prompt: str | None) -> bool:
    try:
        parsed = json.loads(prompt or "")
    except ValueError:
        return False
    return isinstance(parsed, dict) and isinstance(parsed.get("repos"), list) and len(parsed["repos"]) > 0


def primary_artifact(request: LoopRequest, kind: str) -> Artifact | None:
    """The artifact of ``kind`` the loop is about: ``primaryArtifactId`` if it has that type,
    else the last one of the type (the cloud appends the primary last)."""
    of_kind = [a for a in request.artifacts if a.type == kind]
    if request.primary_artifact_id:
        for a in of_kind:
            if a.id == request.primary_artifact_id:
                return a
    return of_kind[-1] if of_kind else None
