"""The OpenAPI document describes the wire routes and is a valid OpenAPI document.

Checked with ``openapi-spec-validator``; every operation has a unique ``operationId`` and its
responses, and the wire routes' request bodies are ClosedLoop's (``repoPath``, ``challengeToken``).
"""

from __future__ import annotations

from collections import Counter

import httpx
from openapi_spec_validator import validate

METHODS = {"get", "post", "put", "patch", "delete"}


async def test_openapi_document_is_valid(relay: httpx.AsyncClient) -> None:
    doc = (await relay.get("/api/gateway/openapi.json")).json()
    validate(doc)
    operations = [op for item in doc["paths"].values() for m, op in item.items() if m in METHODS]
    ids = Counter(op.get("operationId") for op in operations)
    assert None not in ids and all(n == 1 for n in ids.values()), [i for i, n in ids.items() if n > 1]
    assert all(op.get("responses") for op in operations)
    def body(path: str, method: str = "post") -> dict:
        return doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]

    assert "repoPath" in body("/api/gateway/git")["properties"]
    assert "challengeToken" in body("/gateway-auth/exchange")["properties"]
    assert {"filePath", "repoPath"} <= set(body("/api/gateway/git/diff")["required"])
    refused = doc["paths"]["/api/gateway/git"]["post"]["responses"]["400"]
    error = refused["content"]["application/json"]["schema"]
    assert set(error["required"]) >= {"error", "code"}
