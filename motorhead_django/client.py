"""An HTTP client for every route of a Motorhead server, self-hosted or hosted (Metal).

Transport only: it never touches the database. One :class:`MotorheadClient`
holds a pool of keep-alive connections (urllib3); :func:`get_client` returns one built from
the ``MOTORHEAD`` setting. Failures are typed (:mod:`motorhead_django.exceptions`)
so the sync engine can tell "nothing was sent" from "it may have been applied".
"""

from __future__ import annotations

import json as _json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import urllib3
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_environ_proxies, select_proxy
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from . import redaction
from .conf import motorhead_settings
from .exceptions import (
    MotorheadClientError,
    MotorheadConfigurationError,
    MotorheadConnectError,
    MotorheadDisconnectedError,
    MotorheadError,
    MotorheadResponseError,
    MotorheadServerError,
    MotorheadTimeoutError,
    MotorheadValidationError,
)

logger = logging.getLogger(__name__)

# How much of an error body goes into an exception's text.
_BODY_EXCERPT = 300


@dataclass(frozen=True)
class Message:
    role: str
    content: str


M = TypeVar("M")


@dataclass(frozen=True)
class Memory(Generic[M]):
    """A session's memory as Motorhead shapes it: the newest window, newest message first.

    One shape for both sides: ``GET /sessions/{id}/memory`` gives ``Memory[Message]``,
    :func:`motorhead_django.memory.get_memory` gives ``Memory[ChatMessage]``.
    """

    messages: tuple[M, ...]
    context: str | None
    tokens: int

    @property
    def chronological(self) -> tuple[M, ...]:
        return tuple(reversed(self.messages))


@dataclass(frozen=True)
class RetrievalResult:
    role: str
    content: str
    dist: float


MessageLike = Message | Mapping[str, Any] | tuple[str, str] | Any


class MotorheadClient:
    """One Motorhead server. Thread-safe for concurrent calls; cheap to keep around.

    ``url`` is the base URL (``http://127.0.0.1:8080``, or the hosted
    ``https://api.getmetal.io/v1/motorhead``). ``api_key`` and ``client_id``
    select the hosted variant: they are sent as ``x-metal-api-key`` /
    ``x-metal-client-id``, and ``{"data": ...}`` envelopes are unwrapped.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        client_id: str | None = None,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        user_agent: str = "motorhead-django",
        pool_size: int = 10,
    ) -> None:
        if not url:
            raise MotorheadConfigurationError(
                "No Motorhead URL: set MOTORHEAD['URL'] to use the server."
            )
        self.url = url.rstrip("/")
        self._base_path = urlsplit(self.url).path
        self._api_key = api_key
        self._client_id = client_id
        self.timeout = (connect_timeout, read_timeout)
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self.user_agent = user_agent
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if self.hosted:
            self._headers["x-metal-api-key"] = api_key or ""
            self._headers["x-metal-client-id"] = client_id or ""
        self._json_headers = {**self._headers, "Content-Type": "application/json"}
        self._pool_size = pool_size
        self._pool: urllib3.PoolManager | None = None
        self._pool_guard = threading.Lock()

    @classmethod
    def from_settings(cls) -> MotorheadClient:
        s = motorhead_settings
        if not s.URL:
            raise MotorheadConfigurationError(
                "No Motorhead URL: set MOTORHEAD['URL'] (local-only mode has no server)."
            )
        return cls(
            s.URL,
            api_key=s.API_KEY,
            client_id=s.CLIENT_ID,
            connect_timeout=s.CONNECT_TIMEOUT,
            read_timeout=s.READ_TIMEOUT,
            user_agent=s.USER_AGENT,
        )

    @property
    def hosted(self) -> bool:
        return bool(self._api_key or self._client_id)

    def __repr__(self) -> str:
        # Never the key: only whether there is one.
        return (
            f"<MotorheadClient {redaction.url_without_credentials(self.url)} hosted={self.hosted}>"
        )

    # -- routes ---------------------------------------------------------------

    def health(self) -> int:
        """``GET /``: the server's clock, in milliseconds since the epoch."""
        data = self._json("GET", "/")
        now = data.get("now") if isinstance(data, dict) else None
        if not isinstance(now, int):
            raise self._shape_error("GET", "/", "a health answer without an integer 'now'")
        return now

    def list_sessions(
        self, *, page: int = 1, size: int = 10, namespace: str | None = None
    ) -> list[str]:
        """``GET /sessions``: ids ordered least recently written first.

        The server refuses ``page > 100``, and reads ``page=0`` / ``size=0`` as
        "the last page" / "everything" (unsigned wrap-around), so both are refused
        here; ask for a larger ``size`` to reach further.
        """
        if not 1 <= page <= 100 or size < 1:
            raise MotorheadValidationError(
                {"page": "page is 1 to 100 and size at least 1 (the server's limits)."}
            )
        params: dict[str, Any] = {"page": page, "size": size}
        if namespace:
            params["namespace"] = namespace
        data = self._json("GET", "/sessions", params=params)
        if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
            raise self._shape_error("GET", "/sessions", "a sessions answer that is not a list")
        return data

    def get_memory(self, session_id: str) -> Memory[Message]:
        """``GET /sessions/{id}/memory``: the newest ``window + 1`` messages, newest first."""
        path = self._memory_path(session_id)
        data = self._json("GET", path, session_id=session_id)
        if not isinstance(data, dict) or not isinstance(data.get("messages", []), list):
            raise self._shape_error("GET", path, "a memory answer without a messages list")
        context = data.get("context")
        tokens = data.get("tokens") or 0
        if context is not None and not isinstance(context, str) or not isinstance(tokens, int):
            raise self._shape_error("GET", path, "a memory answer with a bad context or tokens")
        return Memory(
            messages=tuple(self._messages(data.get("messages", []), "GET", path)),
            context=context,
            tokens=tokens,
        )

    def add_memory(
        self,
        session_id: str,
        messages: Iterable[MessageLike],
        *,
        context: str | None = None,
        namespace: str | None = None,
    ) -> None:
        """``POST /sessions/{id}/memory``: append messages (oldest first), optionally a context.

        An empty batch is refused here: the server answers it with a 500 after it
        has already written the context and listed the session.
        """
        payload_messages = [_message_payload(message) for message in messages]
        if not payload_messages:
            raise MotorheadValidationError(
                {"messages": "At least one message is required (Motorhead fails on none)."},
                session_id=session_id,
            )
        body: dict[str, Any] = {"messages": payload_messages}
        if context is not None:
            body["context"] = context
        params = {"namespace": namespace} if namespace else None
        self._json(
            "POST", self._memory_path(session_id), json=body, params=params, session_id=session_id
        )

    def delete_memory(self, session_id: str, *, namespace: str | None = None) -> None:
        """``DELETE /sessions/{id}/memory``. Pass the namespace the session was written under."""
        params = {"namespace": namespace} if namespace else None
        self._json("DELETE", self._memory_path(session_id), params=params, session_id=session_id)

    def retrieve(self, session_id: str, text: str) -> list[RetrievalResult]:
        """``POST /sessions/{id}/retrieval``: long-term memory search (needs it on upstream)."""
        path = f"/sessions/{_segment(session_id)}/retrieval"
        data = self._json("POST", path, json={"text": text}, session_id=session_id)
        if not isinstance(data, list):
            raise self._shape_error("POST", path, "a retrieval answer that is not a list")
        try:
            return [
                RetrievalResult(str(item["role"]), str(item["content"]), float(item["dist"]))
                for item in data
            ]
        except (KeyError, TypeError, ValueError):
            raise self._shape_error(
                "POST", path, "a retrieval result without role/content/dist"
            ) from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.clear()
            self._pool = None

    # -- transport ------------------------------------------------------------

    def _json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        session_id: str | None = None,
    ) -> Any:
        response = self._send(method, path, params=params, json=json, session_id=session_id)
        if response.status >= 400:
            raise self._status_error(method, path, response, session_id)
        try:
            data = _json.loads(response.data)
        except ValueError:
            raise MotorheadResponseError(
                f"{response.status} with a body that is not JSON: "
                f"{self._excerpt(_text(response))!r}",
                method=method,
                path=path,
                session_id=session_id,
            ) from None
        if self.hosted and isinstance(data, dict) and "data" in data:
            return data["data"]
        return data

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None,
        json: Any,
        session_id: str | None,
    ) -> urllib3.BaseHTTPResponse:
        # urllib3 directly, not a requests.Session: the sync engine makes a call
        # per batch, and requests' per-call work (preparing, merging settings,
        # cookies, hooks) cost more CPU than the POST itself on a near server.
        url = self.url + path
        if params:
            url += "?" + urlencode(params)
        headers, body = self._headers, None
        if json is not None:
            headers, body = self._json_headers, _json.dumps(json, allow_nan=False).encode()
        try:
            return self._http().urlopen(
                method,
                url,
                body=body,
                headers=headers,
                timeout=self._timeout,
                retries=False,
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise self._transport_error(exc, method, path, session_id) from None

    def _http(self) -> urllib3.PoolManager:
        if self._pool is None:
            with self._pool_guard:
                if self._pool is None:
                    self._pool = _pool_manager(self.url, self._pool_size)
        return self._pool

    def _transport_error(
        self, exc: urllib3.exceptions.HTTPError, method: str, path: str, session_id: str | None
    ) -> MotorheadError:
        where = {"method": method, "path": path, "session_id": session_id}
        if _never_connected(exc):
            return MotorheadConnectError(f"could not connect to {self._host()}", **where)
        if isinstance(exc, ReadTimeoutError):
            return MotorheadTimeoutError(
                f"no answer within {self.timeout[1]:g}s (the request may have been applied)",
                **where,
            )
        if isinstance(exc, ProtocolError | urllib3.exceptions.SSLError):
            return MotorheadDisconnectedError(
                f"the connection dropped before an answer (the request may have been applied): "
                f"{type(exc).__name__}",
                **where,
            )
        return MotorheadError(f"request failed: {type(exc).__name__}", **where)

    def _status_error(
        self, method: str, path: str, response: urllib3.BaseHTTPResponse, session_id: str | None
    ) -> MotorheadError:
        body = redaction.excerpt(self._redact(_text(response)), redaction.ERROR_BODY_LENGTH)
        kind = MotorheadServerError if response.status >= 500 else MotorheadClientError
        return kind(
            f"{response.status} {response.reason}: {self._excerpt(body)!r}",
            status=response.status,
            body=body,
            method=method,
            path=path,
            session_id=session_id,
        )

    def _shape_error(self, method: str, path: str, what: str) -> MotorheadResponseError:
        return MotorheadResponseError(f"the server sent {what}", method=method, path=path)

    def _messages(self, items: list[Any], method: str, path: str) -> Iterable[Message]:
        for item in items:
            if not (
                isinstance(item, dict)
                and isinstance(item.get("role"), str)
                and isinstance(item.get("content"), str)
            ):
                raise self._shape_error(method, path, "a message without a role and content")
            yield Message(item["role"], item["content"])

    def _memory_path(self, session_id: str) -> str:
        return f"/sessions/{_segment(session_id)}/memory"

    def _host(self) -> str:
        # Host and port only: never the URL's user:password@.
        return redaction.url_without_credentials(self.url, path=False)

    def _redact(self, text: str) -> str:
        # A server (or a proxy in front of it) may echo request headers back, in any encoding.
        secrets = [self._api_key, self._client_id, *redaction.url_credentials(self.url)]
        return redaction.redact(text, [s for s in secrets if s])

    def _excerpt(self, text: str) -> str:
        text = self._redact(text)
        return text if len(text) <= _BODY_EXCERPT else text[:_BODY_EXCERPT] + "…"


def _pool_manager(url: str, pool_size: int) -> urllib3.PoolManager:
    """Connections to ``url``, through the proxy and with the CA bundle that requests would use.

    The environment (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``) is
    read once, when the client makes its first call.
    """
    options: dict[str, Any] = {
        "maxsize": pool_size,
        "ca_certs": os.environ.get("REQUESTS_CA_BUNDLE")
        or os.environ.get("CURL_CA_BUNDLE")
        or DEFAULT_CA_BUNDLE_PATH,
    }
    proxy = select_proxy(url, get_environ_proxies(url))
    if proxy:
        return urllib3.ProxyManager(proxy, **options)
    return urllib3.PoolManager(**options)


def _text(response: urllib3.BaseHTTPResponse) -> str:
    return response.data.decode("utf-8", errors="replace")


def _segment(session_id: str) -> str:
    """One path segment: every reserved character escaped, and "." / ".." too."""
    if not isinstance(session_id, str) or not session_id:
        raise MotorheadValidationError({"session_id": "A session id is a non-empty string."})
    encoded = quote(session_id, safe="")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def _message_payload(message: MessageLike) -> dict[str, str]:
    if isinstance(message, Mapping):
        role, content = message.get("role"), message.get("content")
    elif isinstance(message, tuple) and len(message) == 2:
        role, content = message
    else:
        role, content = getattr(message, "role", None), getattr(message, "content", None)
    if not isinstance(role, str) or not isinstance(content, str):
        raise MotorheadValidationError(
            {"messages": "Each message needs a string role and content."}
        )
    return {"role": role, "content": content}


def _never_connected(exc: BaseException) -> bool:
    """Whether the cause chain shows the connection was never made (refused, no DNS)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NewConnectionError | ConnectTimeoutError):
            return True
        reason = getattr(current, "reason", None)
        nested = (
            current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        )
        current = reason if isinstance(reason, BaseException) else nested or current.__cause__
    return False


_clients = threading.local()


def get_client() -> MotorheadClient:
    """The client for the ``MOTORHEAD`` setting; one per thread, rebuilt when it changes."""
    s = motorhead_settings
    key = (
        s.URL,
        s.API_KEY,
        s.CLIENT_ID,
        s.CONNECT_TIMEOUT,
        s.READ_TIMEOUT,
        s.USER_AGENT,
    )
    cached = getattr(_clients, "entry", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    if cached is not None:
        cached[1].close()
    client = MotorheadClient.from_settings()
    _clients.entry = (key, client)
    return client
