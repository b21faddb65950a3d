"""Who may do what: roles, credentials, the cookie round trip and client
leases, shared by every transport (docs/network.md).

* :class:`Role` — ``audience`` < ``listener`` < ``control``; each role may do
  what the roles before it may. The least role each message needs is in the
  protocol table (:attr:`bridge.protocol.Message.role`).
* :class:`Credentials` — per role, a shared secret (OSC hello proofs) and the
  allow-listed ZeroMQ CURVE public keys; the server's CURVE certificate. Made
  by ``adaptive credentials DIR`` (:func:`create_credentials`), read by
  :func:`load_credentials`.
* :func:`hello_proof` — HMAC-SHA256 (RFC 2104) of a role's secret over the
  server's cookie, so the secret never crosses the wire.
* :class:`CookieJar` — stateless cookies, HMAC(server secret, source host,
  reply port, time bucket), as QUIC's Retry token (RFC 9000 §8.1.2) and DTLS's
  HelloVerifyRequest (RFC 6347 §4.2.1) do: the server keeps nothing for a
  source until it has shown it receives at its address.
* :class:`ClientTable` — the clients of a session (any transport): their id,
  role and lease, with caps per session and per source host.
"""

from __future__ import annotations

import collections
import enum
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bridge.protocol import COOKIE_CHARS, ROLES, ProtocolError

log = logging.getLogger("adaptive.access")

COOKIE_BUCKET_S = 30.0
"""A cookie is valid in the 30 s bucket it was made in and the next one (30 to 60 s)."""

LEASE_S = 30
"""A client that sends nothing (a ping will do) for this long is dropped, seconds."""

MAX_CLIENTS = 64
"""Clients a session holds at once (any transport)."""

DEFAULT_SESSION = "default"
"""The session of a client that named none (:data:`bridge.protocol.DEFAULT_SESSION`)."""

MAX_CLIENTS_PER_HOST = 16
"""Clients from one source host (IP address) at once."""

SECRET_BYTES = 32
"""Random bytes of each role secret made by :func:`create_credentials` (256 bits, SHA-256's block strength)."""

MIN_SECRET_CHARS = 16
"""Shortest role secret accepted from a credentials file."""

CREDENTIALS_ENV = "ADAPTIVE_CREDENTIALS"
"""Environment variable naming the credentials folder when no setting does."""

ZAP_DOMAIN = "adaptive"
"""The ZeroMQ authentication domain (RFC 27/ZAP) of the server's sockets."""

SECRETS_FILE = "secrets.toml"
SERVER_CERT = "server"


class Role(enum.Enum):
    """A client's role. ``control``: scene, stingers, cues, mapping changes
    (and everything a listener may); ``listener``: callbacks, MIDI, audio,
    reading the mapping; ``audience``: callbacks, MIDI, audio and votes
    (``audience_vote``, docs/audience.md)."""

    AUDIENCE = "audience"
    LISTENER = "listener"
    CONTROL = "control"

    @property
    def rank(self) -> int:
        """0 for audience, 1 for listener, 2 for control."""
        return ROLES.index(self.value)

    def allows(self, needed: str | None) -> bool:
        """Whether this role may send a message that needs role ``needed`` (None: anyone)."""
        return needed is None or self.rank >= ROLES.index(needed)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine only (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credentials:
    """What a server with credentials checks.

    Attributes:
        secrets: role -> shared secret (bytes) for OSC hello proofs; a role
            without one cannot be taken over OSC.
        curve_public_key, curve_secret_key: the server's CURVE key pair (z85, 40 bytes each).
        curve_clients: allow-listed client public keys (z85 bytes) -> role.
        folder: where they were read from (for messages).
    """

    secrets: dict[Role, bytes]
    curve_public_key: bytes
    curve_secret_key: bytes
    curve_clients: dict[bytes, Role] = field(default_factory=dict)
    folder: Path | None = None


def how_to_set_credentials() -> str:
    """The sentence every refusal over missing credentials ends with."""
    return (f"make a credentials folder with `adaptive credentials DIR` and pass it with `--credentials DIR`, "
            f"the `credentials` key of a --config file, or the {CREDENTIALS_ENV} environment variable "
            "(docs/network.md)")


def create_credentials(folder: Path) -> list[Path]:
    """Make a credentials folder: ``secrets.toml`` (a random secret per role),
    the server's CURVE certificate (``server.key``, ``server.key_secret``),
    and per role a client certificate whose public half is allow-listed in
    ``ROLE/`` and whose secret half is in ``clients/ROLE.key_secret`` (hand it
    to that role's ZeroMQ client). Existing files are kept.

    Returns:
        The files written.

    Raises:
        OSError: the folder cannot be written.
    """
    import zmq.auth

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    secrets_path = folder / SECRETS_FILE
    if not secrets_path.exists():
        lines = ["# Role secrets of an adaptive server (docs/network.md). Keep this file private: anyone with a",
                 "# role's secret may act in that role. Give each client only the secret of its role."]
        lines += [f'{role} = "{secrets.token_hex(SECRET_BYTES)}"' for role in reversed(ROLES)]
        secrets_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        secrets_path.chmod(0o600)
        written.append(secrets_path)
    if not (folder / f"{SERVER_CERT}.key_secret").exists():
        public, secret = zmq.auth.create_certificates(folder, SERVER_CERT)
        Path(secret).chmod(0o600)
        written += [Path(public), Path(secret)]
    clients = folder / "clients"
    clients.mkdir(exist_ok=True)
    for role in ROLES:
        (folder / role).mkdir(exist_ok=True)
        if not (clients / f"{role}.key_secret").exists():
            public, secret = zmq.auth.create_certificates(clients, role)
            Path(secret).chmod(0o600)
            allowed = folder / role / f"{role}.key"
            Path(public).replace(allowed)
            written += [allowed, Path(secret)]
    return written


def load_credentials(folder: Path) -> Credentials:
    """Read a credentials folder made by :func:`create_credentials` (or by hand).

    Raises:
        ValueError: a file missing or malformed, with what to do.
    """
    import zmq.auth

    where = f"credentials folder {folder}"
    if not folder.is_dir():
        raise ValueError(f"{where} does not exist: {how_to_set_credentials()}")
    secrets_path = folder / SECRETS_FILE
    try:
        data = tomllib.loads(secrets_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{where} has no {SECRETS_FILE} (role = \"secret\" lines): run `adaptive credentials "
                         f"{folder}`") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{secrets_path} is not valid TOML: {error}") from None
    unknown = sorted(set(data) - set(ROLES))
    if unknown:
        raise ValueError(f"{secrets_path}: unknown role {unknown[0]!r} (allowed: {', '.join(ROLES)})")
    role_secrets = {}
    for name, value in data.items():
        if not isinstance(value, str) or len(value) < MIN_SECRET_CHARS:
            raise ValueError(f"{secrets_path}: {name} must be a string of at least {MIN_SECRET_CHARS} characters "
                             "(`adaptive credentials` makes 64 random hex digits)")
        role_secrets[Role(name)] = value.encode("utf-8")
    try:
        public, secret = zmq.auth.load_certificate(folder / f"{SERVER_CERT}.key_secret")
    except (OSError, ValueError):
        raise ValueError(f"{where} has no readable ZeroMQ CURVE server certificate {SERVER_CERT}.key_secret: "
                         f"run `adaptive credentials {folder}`") from None
    if secret is None:
        raise ValueError(f"{folder / (SERVER_CERT + '.key_secret')} holds no secret key")
    clients: dict[bytes, Role] = {}
    for name in ROLES:
        role_folder = folder / name
        if role_folder.is_dir():
            for key in zmq.auth.load_certificates(role_folder):
                clients[key] = Role(name)
    return Credentials(role_secrets, public, secret, clients, folder)


def hello_proof(secret: bytes, cookie: str, role: str, reply_port: int) -> str:
    """A hello's proof of a role's secret: the hex HMAC-SHA256 (RFC 2104) of
    ``secret`` over ``"adaptive-hello|COOKIE|ROLE|REPLY_PORT"`` (64 characters).
    The cookie is the server's nonce, so a proof is good for one address for
    at most 60 s and the secret itself never crosses the wire."""
    message = f"adaptive-hello|{cookie}|{role}|{reply_port}".encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- cookies


class CookieJar:
    """Stateless cookies for the hello round trip.

    ``cookie(host, port)`` is the first 64 bits (16 hex characters) of
    HMAC-SHA256(server secret, ``host|port|bucket``) with ``bucket`` =
    ``floor(now / bucket_s)``; :meth:`check` accepts the cookie of this
    bucket or the one before. Only whoever receives at (host, port) learns it,
    so a hello that carries it proves its source receives there.

    Args:
        secret: the server's secret (default: 32 random bytes, new each start).
        bucket_s: seconds per bucket (a cookie lives ``bucket_s`` to 2 ``bucket_s``).
        clock: seconds, monotonic (tests pass a fake clock).
    """

    def __init__(self, secret: bytes | None = None, bucket_s: float = COOKIE_BUCKET_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not bucket_s > 0:
            raise ValueError(f"bucket_s must be > 0 seconds, got {bucket_s}")
        self._secret = secret if secret is not None else os.urandom(32)
        self.bucket_s = bucket_s
        self.clock = clock

    def _make(self, host: str, port: int, bucket: int) -> str:
        digest = hmac.new(self._secret, f"{host}|{port}|{bucket}".encode(), hashlib.sha256).hexdigest()
        return digest[:COOKIE_CHARS]

    def cookie(self, host: str, port: int) -> str:
        """The cookie for (host, port) now."""
        return self._make(host, port, int(self.clock() // self.bucket_s))

    def check(self, host: str, port: int, cookie: str) -> bool:
        """Whether ``cookie`` was made for (host, port) in this bucket or the one before."""
        bucket = int(self.clock() // self.bucket_s)
        return any(hmac.compare_digest(cookie.encode(), self._make(host, port, b).encode())
                   for b in (bucket, bucket - 1))


# --------------------------------------------------------------------------- clients


@dataclass
class Client:
    """One client of a session, whatever its transport.

    Attributes:
        client_id: 32 hex characters (128 random bits), sent only in its welcome.
        role: what it may do.
        transport: ``"osc"`` or ``"zmq"``.
        key: how its transport knows it: OSC, the (host, port) its hello came
            from; ZeroMQ, its routing id.
        host: its source IP address (for the per-host cap).
        reply_address: OSC: (host, reply_port) where replies and callbacks go.
        name: its client_name.
        sample_format: what its hello preferred.
        streams: what it subscribed to.
        last_seen_s: clock seconds of its last message.
        session_id: the session it joined with its hello (every later
            message of it goes there; docs/sessions.md).
    """

    client_id: str
    role: Role
    transport: str
    key: Any
    host: str
    reply_address: tuple[str, int] | None = None
    name: str = ""
    sample_format: str = "s16"
    streams: set[str] = field(default_factory=lambda: {"events"})
    last_seen_s: float = 0.0
    session_id: str = DEFAULT_SESSION

    @property
    def address(self) -> tuple[str, int] | None:
        """Where its OSC replies go (None for other transports)."""
        return self.reply_address


class ClientTable:
    """The clients of a server's sessions, across transports: ids, roles, leases and caps.

    Thread-safe (one lock; nothing slow runs under it).

    Args:
        clock: seconds, monotonic (tests pass a fake clock).
        lease_s: a client silent this long is dropped by :meth:`expire` (counted ``clients_expired``).
        max_clients: clients of one session at once (a hello beyond it gets ``not_allowed``).
        max_clients_per_host: clients at once from one source host.
        on_change: called (without the lock) after clients were added or removed.

    Attributes:
        counters: ``clients_added``, ``clients_expired``, ``goodbyes``, ``refused_at_cap``.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, lease_s: float = LEASE_S,
                 max_clients: int = MAX_CLIENTS, max_clients_per_host: int = MAX_CLIENTS_PER_HOST,
                 on_change: Callable[[], None] | None = None) -> None:
        if not lease_s > 0:
            raise ValueError(f"lease_s must be > 0 seconds, got {lease_s}")
        if max_clients < 1 or max_clients_per_host < 1:
            raise ValueError(f"the client caps must be >= 1, got {max_clients} and {max_clients_per_host}")
        self.clock = clock
        self.lease_s = lease_s
        self.max_clients = max_clients
        self.max_clients_per_host = max_clients_per_host
        self.counters: collections.Counter = collections.Counter()
        self._listeners: list[Callable[[], None]] = [on_change] if on_change is not None else []
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, Any], Client] = {}
        self._by_id: dict[str, Client] = {}

    def add_listener(self, on_change: Callable[[], None]) -> None:
        """Also call ``on_change`` after clients were added or removed."""
        self._listeners.append(on_change)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    def add(self, transport: str, key: Any, host: str, role: Role, **details: Any) -> Client:
        """A client said hello (again): a new id, the role, a fresh lease. A
        client that says hello again from the same key replaces itself.

        Raises:
            ProtocolError: ``not_allowed`` at a cap, naming the cap.
        """
        with self._lock:
            old = self._by_key.pop((transport, key), None)
            if old is not None:
                self._by_id.pop(old.client_id, None)
            same_host = sum(1 for c in self._by_key.values() if c.host == host)
            session_id = details.get("session_id", DEFAULT_SESSION)
            same_session = sum(1 for c in self._by_key.values() if c.session_id == session_id)
            problem = None
            if same_session >= self.max_clients:
                problem = (f"this session has its {self.max_clients} clients (the cap, setting max_clients): "
                           "try again when one has left (goodbye) or its lease has run out")
            elif same_host >= self.max_clients_per_host:
                problem = (f"{host} has {same_host} clients, the cap per source host (setting "
                           "max_clients_per_host): close one (goodbye) or wait for its lease to run out")
            if problem is not None:
                if old is not None:  # keep the old one
                    self._by_key[(transport, key)] = old
                    self._by_id[old.client_id] = old
                self.counters["refused_at_cap"] += 1
                raise ProtocolError("not_allowed", problem)
            client = Client(secrets.token_hex(16), role, transport, key, host, last_seen_s=self.clock(), **details)
            if old is not None:
                client.streams = old.streams
            self._by_key[(transport, key)] = client
            self._by_id[client.client_id] = client
            self.counters["clients_added"] += 1
        self._changed()
        return client

    def get(self, transport: str, key: Any) -> Client | None:
        """The client known to ``transport`` by ``key``, or None."""
        with self._lock:
            return self._by_key.get((transport, key))

    def by_id(self, client_id: str) -> Client | None:
        """The client with this id (from its welcome), or None."""
        with self._lock:
            return self._by_id.get(client_id)

    def renew(self, client: Client) -> None:
        """The client sent something: its lease starts again."""
        client.last_seen_s = self.clock()

    def remove(self, client: Client, reason: str = "goodbyes") -> bool:
        """Forget ``client`` (counted under ``reason``); False if it was not here."""
        with self._lock:
            if self._by_key.get((client.transport, client.key)) is not client:
                return False
            del self._by_key[(client.transport, client.key)]
            self._by_id.pop(client.client_id, None)
            self.counters[reason] += 1
        self._changed()
        return True

    def expire(self) -> list[Client]:
        """Drop every client silent for ``lease_s`` or more (counted ``clients_expired``); returns them."""
        deadline = self.clock() - self.lease_s
        with self._lock:
            gone = [c for c in self._by_key.values() if c.last_seen_s <= deadline]
            for client in gone:
                del self._by_key[(client.transport, client.key)]
                self._by_id.pop(client.client_id, None)
            self.counters["clients_expired"] += len(gone)
        for client in gone:
            log.info("%s client %s (%s) dropped: silent for %g s", client.transport, client.name or "?", client.host,
                     self.lease_s)
        if gone:
            self._changed()
        return gone

    def clients(self, transport: str | None = None, session_id: str | None = None) -> list[Client]:
        """A snapshot of the clients (of one transport, or all; of one session, or all)."""
        with self._lock:
            return [c for c in self._by_key.values() if (transport is None or c.transport == transport)
                    and (session_id is None or c.session_id == session_id)]

    def count(self, session_id: str) -> int:
        """How many clients session ``session_id`` has now."""
        with self._lock:
            return sum(1 for c in self._by_key.values() if c.session_id == session_id)

    def remove_session(self, session_id: str) -> list[Client]:
        """Forget every client of session ``session_id`` (it ended; counted
        ``clients_of_ended_sessions``); returns them."""
        with self._lock:
            gone = [c for c in self._by_key.values() if c.session_id == session_id]
            for client in gone:
                del self._by_key[(client.transport, client.key)]
                self._by_id.pop(client.client_id, None)
            self.counters["clients_of_ended_sessions"] += len(gone)
        if gone:
            self._changed()
        return gone

    def __len__(self) -> int:
        return len(self._by_key)


# --------------------------------------------------------------------------- ZeroMQ CURVE


def make_curve_server(sock: Any, credentials: Credentials | None) -> None:
    """Make ``sock`` (before it binds) a CURVE server with the server's key
    pair (RFC 26/CurveZMQ: encrypted and authenticated); nothing without credentials."""
    if credentials is None:
        return
    import zmq

    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, credentials.curve_secret_key)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, credentials.curve_public_key)
    sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())


def start_curve_authenticator(context: Any, credentials: Credentials) -> Any:
    """Start pyzmq's ZAP handler (``zmq.auth.thread.ThreadAuthenticator``) on
    ``context``: a CURVE client connects only with an allow-listed public key,
    and every message it sends carries its role as the ZeroMQ ``User-Id``
    property. One per context; stop it (``.stop()``) after the sockets close.

    Returns:
        The running authenticator.
    """
    from zmq.auth.thread import ThreadAuthenticator

    roles = dict(credentials.curve_clients)

    class _RoleAuthenticator(ThreadAuthenticator):
        def curve_user_id(self, client_public_key: bytes) -> str:  # called once a key is allowed
            import zmq

            return roles[zmq.utils.z85.encode(client_public_key)].value

    class _AllowList:
        @staticmethod
        def callback(domain: str, key: bytes) -> bool:
            return key in roles

    authenticator = _RoleAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=_AllowList())
    return authenticator
