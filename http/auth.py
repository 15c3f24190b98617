"""Who is calling: the gateway token, one-time challenges, browser sessions, Origin and Host.

Secrets are never compared with ``==``. The gateway token is checked with
``hmac.compare_digest``; challenges and sessions are kept under the SHA-256 of their value, so
a lookup's timing depends on a hash the caller cannot steer, never on how much of a live
secret a guess shares.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

GATEWAY_HEADER = "X-Desktop-Gateway-Token"
SESSION_HEADER = "X-Desktop-Session-Token"

CHALLENGE_TTL = 60.0
SESSION_IDLE = 600.0
MAX_SESSIONS = 8
MAX_CHALLENGES = 64

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def is_loopback_addr(addr: str | None) -> bool:
    if not addr:
        return False
    try:
        return ipaddress.ip_address(addr.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def split_host(host: str) -> tuple[str, int | None]:
    """``Host`` header -> (lower-case name, port or None); IPv6 literals keep brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return host, None
        name, rest = host[: end + 1], host[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.partition(":")
    if port:
        return name, int(port) if port.isdigit() else -1
    return name, None


@dataclass
class Session:
    expires_at: float
    created_at: float


@dataclass
class Auth:
    """In-memory auth state of one gateway; sessions do not survive a restart (by design)."""

    gateway_token: str
    port: int
    extra_origins: Iterable[str] = ()
    extra_hosts: Iterable[str] = ()
    clock: Callable[[], float] = time.time
    challenge_ttl: float = CHALLENGE_TTL
    session_idle: float = SESSION_IDLE
    max_sessions: int = MAX_SESSIONS
    _challenges: dict[bytes, float] = field(default_factory=dict)
    _sessions: OrderedDict[bytes, Session] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self._token_bytes = self.gateway_token.encode()
        self.allowed_origins = frozenset(
            {f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}"}
            | {o.rstrip("/").lower() for o in self.extra_origins}
        )
        self.allowed_host_names = frozenset(LOOPBACK_NAMES | {h.lower() for h in self.extra_hosts})

    # ---- request checks ---------------------------------------------------------------------

    def host_ok(self, host: str | None) -> bool:
        """DNS-rebinding guard: a loopback name (or a configured one) with the bound port."""
        if not host:
            return False
        name, port = split_host(host)
        return name in self.allowed_host_names and port == self.port

    def origin_ok(self, origin: str) -> bool:
        return origin.rstrip("/").lower() in self.allowed_origins

    def check_gateway_token(self, value: str | None) -> bool:
        if not value:
            return False
        return hmac.compare_digest(value.encode("utf-8", "surrogatepass"), self._token_bytes)

    # ---- challenges -------------------------------------------------------------------------

    def mint_challenge(self) -> tuple[str, float]:
        now = self.clock()
        self._prune(now)
        while len(self._challenges) >= MAX_CHALLENGES:  # oldest first; dicts keep order
            self._challenges.pop(next(iter(self._challenges)))
        value = secrets.token_urlsafe(32)
        expires = now + self.challenge_ttl
        self._challenges[_digest(value)] = expires
        return value, expires

    def exchange(self, challenge: str) -> tuple[str, float] | None:
        """Trade a live challenge for a session token; a challenge works once."""
        now = self.clock()
        self._prune(now)
        expires = self._challenges.pop(_digest(challenge), None)
        if expires is None or expires < now:
            return None
        return self._new_session(now)

    # ---- sessions ---------------------------------------------------------------------------

    def _new_session(self, now: float) -> tuple[str, float]:
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        value = secrets.token_urlsafe(32)
        session = Session(expires_at=now + self.session_idle, created_at=now)
        self._sessions[_digest(value)] = session
        return value, session.expires_at

    def check_session(self, value: str | None) -> bool:
        """Valid and unexpired; each use extends its idle deadline."""
        if not value:
            return False
        now = self.clock()
        key = _digest(value)
        session = self._sessions.get(key)
        if session is None:
            return False
        if session.expires_at < now:
            del self._sessions[key]
            return False
        session.expires_at = now + self.session_idle
        return True

    @property
    def live_sessions(self) -> int:
        now = self.clock()
        return sum(1 for s in self._sessions.values() if s.expires_at >= now)

    def _prune(self, now: float) -> None:
        for key in [k for k, exp in self._challenges.items() if exp < now]:
            del self._challenges[key]
        for key in [k for k, s in self._sessions.items() if s.expires_at < now]:
            del self._sessions[key]
