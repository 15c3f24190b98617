"""How ``services/github.py`` reads remotes and ``services/gh.py`` reads gh's failures (pure
functions, no gh needed)."""

from __future__ import annotations

import pytest

from gateway.supervisor.errors import (
    BadRequest,
    GatewayError,
    NotFound,
    Rejected,
    Unavailable,
    UpstreamFailed,
)
from gateway.supervisor.services.gh import GhResult, classify
from gateway.supervisor.services.github import check_slug, parse_remote, pr_number


@pytest.mark.parametrize(
    ("url", "slug"),
    [
        ("https://github.com/OWNER/REPO.git", "OWNER/REPO"),
        ("https://github.com/OWNER/REPO", "OWNER/REPO"),
        ("https://user:tok@github.com/o-1/r.x.git", "o-1/r.x"),
        ("git@github.com:OWNER/REPO.git", "OWNER/REPO"),
        ("ssh://git@github.com:22/OWNER/REPO.git", "OWNER/REPO"),
        ("https://gitlab.com/OWNER/REPO.git", None),
        ("https://evilgithub.com/OWNER/REPO.git", None),
        ("https://github.com.evil.example/OWNER/REPO.git", None),
        ("https://github.com/OWNER/REPO/extra", None),
        ("/srv/git/REPO.git", None),
        ("https://github.com/-x/REPO.git", None),
    ],
)
def test_parse_remote_takes_github_com_only(url: str, slug: str | None) -> None:
    """EL ``git-pr.ts`` ``getRepoSlug`` (``github\\.com[:/]owner/repo``), without its bugs: the host
    must be github.com itself."""
    assert parse_remote(url) == slug


def test_names_and_numbers_never_become_flags() -> None:
    for owner, repo in (("--repo", "x"), ("o", "-R"), ("..", "r"), ("o/p", "r"), ("o", "")):
        with pytest.raises(BadRequest):
            check_slug(owner, repo)
    assert pr_number("12", "pr") == 12 and pr_number(12, "pr") == 12
    for value in ("-1", "1 --web", "0x10", True, 0, -3, 1.5, None, 2**60):
        with pytest.raises(BadRequest):
            pr_number(value, "pr")


@pytest.mark.parametrize(
    ("code", "stdout", "stderr", "kind", "error_code", "message"),
    [
        (4, "", "To get started with GitHub CLI, please run:  gh auth login",
         Unavailable, "gh_unauthenticated", "GH_TOKEN"),
        (1, "", "HTTP 401: Bad credentials (https://api.github.com/graphql)",
         Unavailable, "gh_unauthenticated", "gh auth"),
        (1, '{"message": "Validation Failed", "errors": ["Line could not be resolved"]}',
         "gh: Validation Failed (HTTP 422)", Rejected, "github_unprocessable", "Failed: Line could not be"),
        (1, "", "pull request create failed: GraphQL: No commits between main and x (createPullRequest)",
         Rejected, "github_unprocessable", "No commits between main and x (createPullRequest)"),
        (1, '{"message": "Not Found"}', "gh: Not Found (HTTP 404)",
         NotFound, "github_not_found", "Not Found"),
        (1, "", "error connecting to api.github.com",
         UpstreamFailed, "gh_failed", "error connecting to api.github.com"),
    ],
)  # fmt: skip
def test_classify_keeps_githubs_words(
    code: int, stdout: str, stderr: str, kind: type[GatewayError], error_code: str, message: str
) -> None:
    err = classify(GhResult(code, stdout, stderr, "p1"), "gh api")
    assert type(err) is kind and err.code == error_code
    assert message in err.message
    assert err.details["exitCode"] == code
