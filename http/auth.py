"""Who is calling: the gateway token, one-time challenges, browser sessions, Origin and Host.

Two kinds of caller, as in ClosedLoop's desktop gateway (``apps/desktop/src/server/router.ts``):

- programs holding the **gateway token** (``X-Desktop-Gateway-Token``: the CLI, ClosedLoop's cloud
  command executor). The token is checked first, so a relayed command that carries an Origin
  is never refused for it;
- browsers holding a **session** (``X-Desktop-Session-Token``) bound to the ``Origin`` that traded
  for it at ``/gateway-auth/exchange``: another Origin cannot use it.

A session comes from a one-time challenge: one minted here (``POST /api/gateway/auth/challenge``,
gateway token only; such challenges carry the ``LOCAL_PREFIX`` so they are never sent to the
cloud), or one the ClosedLoop cloud minted and verifies (``services.closedloop``).

Allowed browser origins: ClosedLoop's web app origin (default ``https://app.closedloop.ai``),
any loopback origin (``localhost``, ``*.localhost``, 127.0.0.0/8, ``[::1]``, any port), and
configured ones. ``null`` never.

Secrets are never compared with ``==``. The gateway token is checked with
``hmac.compare_digest``; challenges and sessions are kept under the SHA-256 of their value, so
a lookup's timing depends on a hash the caller cannot steer.
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
from urllib.parse import urlsplit

GATEWAY_HEADER = "X-Desktop-Gateway-Token"
SESSION_HEADER = "X-Desktop-Session-Token"

CHALLENGE_TTL = 60.0
SESSION_IDLE = 600.0
MAX_SESSIONS = 8
MAX_CHALLENGES = 64
LOCAL_PREFIX = "dgw1."

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def is_loopback_addr(addr: str | None) -> bool:
    if not addr:
        return False
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port, or None if not an origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username or parts.password:
        return None
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    default = 80 if parts.scheme == "http" else 443
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def is_loopback_origin(origin: str) -> bool:
    """ClosedLoop's ``isLoopbackOrigin``: localhost, ``*.localhost``, ::1, 127.0.0.0/8."""
    norm = normalize_origin(origin)
    if norm is None:
        return False
    host = urlsplit(norm).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
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
    origin: str | None
    idle_until: float
    hard_until: float
    created_at: float

    def expires_at(self) -> float:
        return min(self.idle_until, self.hard_until)


@dataclass
class Auth:
    """In-memory auth state of one gateway; sessions do not survive a restart (by design)."""

    gateway_token: str
    port: int
    extra_origins: Iterable[str] = ()
    extra_hosts: Iterable[str] = ()
    clock: Callable[[], float] = time.time
    web_app_origin: str = "https://app.closedloop.ai"
    challenge_ttl: float = CHALLENGE_TTL
    session_idle: float = SESSION_IDLE
    max_sessions: int = MAX_SESSIONS
    _challenges: dict[bytes, float] = field(default_factory=dict)
    _sessions: OrderedDict[bytes, Session] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self._token_bytes = self.gateway_token.encode()
        self.own_origins = frozenset({f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}"})
        wanted = (*self.extra_origins, self.web_app_origin)
        self.configured_origins = frozenset(n for n in map(normalize_origin, wanted) if n is not None)
        self.allowed_host_names = frozenset(LOOPBACK_NAMES | {h.lower() for h in self.extra_hosts})

    # ---- request checks ---------------------------------------------------------------------

    def host_ok(self, host: str | None) -> bool:
        """DNS-rebinding guard: a loopback name (or a configured one) with the bound port."""
        if not host:
            return False
        name, port = split_host(host)
        return name in self.allowed_host_names and port == self.port

    def origin_ok(self, origin: str) -> bool:
        norm = normalize_origin(origin)
        if norm is None:
            return False
        if norm in self.configured_origins:
            return True
        return is_loopback_origin(norm)

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
        value = LOCAL_PREFIX + secrets.token_urlsafe(32)
        expires = now + self.challenge_ttl
        self._challenges[_digest(value)] = expires
        return value, expires

    @staticmethod
    def is_local_challenge(value: str) -> bool:
        return value.startswith(LOCAL_PREFIX)

    def redeem(self, challenge: str) -> bool:
        """Use up a live local challenge; False if unknown, used or expired."""
        now = self.clock()
        self._prune(now)
        expires = self._challenges.pop(_digest(challenge), None)
        return expires is not None and expires >= now

    # ---- sessions ---------------------------------------------------------------------------

    def new_session(self, origin: str | None, ttl: float | None = None) -> tuple[str, float]:
        """A session bound to ``origin``; ``ttl`` caps its life (a cloud-verified session)."""
        now = self.clock()
        self._prune(now)
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        value = secrets.token_urlsafe(32)
        hard = now + ttl if ttl is not None else float("inf")
        session = Session(normalize_origin(origin) if origin else None, now + self.session_idle, hard, now)
        self._sessions[_digest(value)] = session
        return value, session.expires_at()

    def check_session(self, value: str | None, origin: str | None) -> str | None:
        """None when the session is good for ``origin`` (each use extends its idle deadline),
        else why not (``session_expired``, ``origin_mismatch``, ``origin_missing``). ``origin``
        None means "a same-origin read from the gateway's own page"."""
        if not value:
            return "missing_token"
        now = self.clock()
        key = _digest(value)
        session = self._sessions.get(key)
        if session is None or session.expires_at() < now:
            self._sessions.pop(key, None)
            return "session_expired"
        wanted = normalize_origin(origin) if origin is not None else None
        if origin is None:
            if session.origin not in self.own_origins:
                return "origin_missing"
        elif session.origin != wanted:
            return "origin_mismatch"
        session.idle_until = now + self.session_idle
        return None

    @property
    def live_sessions(self) -> int:
        now = self.clock()
        return sum(1 for s in self._sessions.values() if s.expires_at() >= now)

    def _prune(self, now: float) -> None:
        for key in [k for k, exp in self._challenges.items() if exp < now]:
            del self._challenges[key]
        for key in [k for k, s in self._sessions.items() if s.expires_at() < now]:
            del self._sessions[key]
