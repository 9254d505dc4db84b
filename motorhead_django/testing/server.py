"""A Motorhead-compatible HTTP server on loopback, for tests (ours and yours).

It answers the routes of a real Motorhead server with the same paths, JSON
shapes, ordering, statuses and error bodies (see docs/testing.md for where it
stands in for the LLM and the embeddings). Start it in a thread::

    with MotorheadTestServer(window_size=12) as server:
        requests.post(f"{server.url}/sessions/s1/memory", json={"messages": [...]})
        server.stored_messages("s1")

or as a process: ``python -m motorhead_django.testing --port 8080``.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import socket
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from .faults import Faults
from .llm import ChatModel, OpenAIRoutes, summarizing_model
from .payloads import PayloadError, parse_memory_payload, parse_retrieval_payload
from .store import MotorheadStore, Summarizer, default_summarizer, split_line

# actix-web's default JSON body limit.
JSON_LIMIT = 2_097_152
PLAIN = "text/plain; charset=utf-8"
JSON = "application/json"
_U64 = 2**64
# What redis-rs reports for LPUSH with no values (an empty messages list).
_LPUSH_ARITY_ERROR = (
    b"An error was signalled by the server: wrong number of arguments for 'lpush' command"
)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # raw, still percent-encoded
    query: str
    headers: dict[str, str]
    body: bytes
    fault: str | None
    peer: str = ""  # the client's address and port: one per TCP connection


class MotorheadTestServer:
    """A Motorhead server in a background thread, with inspectable state and injectable faults.

    ``hosted=True`` behaves like the managed (Metal) variant: it requires the
    ``x-metal-api-key`` / ``x-metal-client-id`` headers (401 otherwise) and wraps
    every answer in ``{"data": ...}``. ``prefix`` serves the routes under a base
    path (the hosted URL ends in ``/v1/motorhead``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        window_size: int = 12,
        long_term_memory: bool = False,
        hosted: bool = False,
        api_key: str | None = None,
        client_id: str | None = None,
        prefix: str = "",
        compaction_delay: float = 0.0,
        summarizer: Summarizer = default_summarizer,
        seed: int | None = None,
        verbose: bool = False,
        llm_model: ChatModel = summarizing_model,
        llm_api_key: str | None = None,
        embedding_dimensions: int = 64,
    ) -> None:
        if hosted and not (api_key and client_id):
            raise ValueError("a hosted test server needs an api_key and a client_id")
        self.host = host
        self.port = port
        self.hosted = hosted
        self.api_key = api_key
        self.client_id = client_id
        self.prefix = prefix.rstrip("/")
        self.verbose = verbose
        self.faults = Faults(seed=seed, compaction_delay=compaction_delay)
        # The OpenAI-compatible /v1 routes (testing/llm.py) have faults of their own.
        self.llm_faults = Faults(seed=seed)
        self.openai = OpenAIRoutes(
            model=llm_model,
            api_key=llm_api_key,
            dimensions=embedding_dimensions,
            seed=seed or 0,
        )
        self.store = MotorheadStore(
            window_size=window_size,
            long_term_memory=long_term_memory,
            summarizer=summarizer,
            faults=self.faults,
        )
        self.requests: list[RecordedRequest] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # Open client connections: stop() closes them, as a server that exits does.
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> MotorheadTestServer:
        handler = type("Handler", (_Handler,), {"motorhead": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            # A short poll keeps stop() quick: tests start and stop many servers.
            kwargs={"poll_interval": 0.05},
            name=f"motorhead-test-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> MotorheadTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.prefix}"

    @property
    def openai_url(self) -> str:
        """The ``BASE_URL`` of the OpenAI-compatible routes (``SUMMARIZER``, ``EMBEDDINGS``)."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def window_size(self) -> int:
        return self.store.window_size

    # -- inspection, for tests --------------------------------------------------

    def stored_lines(self, session_id: str) -> list[str]:
        """Every stored ``"role: content"`` line of a session, oldest first, window or not."""
        with self.store.lock:
            return list(reversed(self.store.lists.get(session_id, [])))

    def stored_messages(self, session_id: str) -> list[dict[str, str]]:
        """The session's stored messages, oldest first, as GET would split them."""
        pairs = (split_line(line) for line in self.stored_lines(session_id))
        return [{"role": role, "content": content} for role, content in filter(None, pairs)]

    def context(self, session_id: str) -> str | None:
        with self.store.lock:
            return self.store.contexts.get(session_id)

    def tokens(self, session_id: str) -> int:
        with self.store.lock:
            return self.store.tokens.get(session_id, 0)

    def sessions(self, namespace: str | None = None) -> list[str]:
        """All listed session ids of a namespace, in the server's listing order."""
        return self.store.list_sessions(namespace, 0, -1)

    def summarized_lines(self, session_id: str) -> list[str]:
        """Lines that went through the summariser, oldest first (repeats possible)."""
        with self.store.lock:
            return list(self.store.traces.get(session_id, _EMPTY_TRACE).summarized)

    def dropped_lines(self, session_id: str) -> list[str]:
        """Lines trimmed away without ever being summarised: what a real server loses."""
        with self.store.lock:
            return list(self.store.traces.get(session_id, _EMPTY_TRACE).dropped)

    def summaries(self, session_id: str) -> list[str]:
        """Every summary a compaction produced for the session, oldest first."""
        with self.store.lock:
            return list(self.store.traces.get(session_id, _EMPTY_TRACE).summaries)

    def preload(
        self,
        session_id: str,
        messages: list[dict[str, str]] | list[tuple[str, str]],
        *,
        context: str | None = None,
        namespace: str | None = None,
    ) -> None:
        """Store messages (oldest first) as another client's POST would, but without compaction."""
        pairs = [(m["role"], m["content"]) if isinstance(m, dict) else tuple(m) for m in messages]
        if context is not None:
            self.store.set_context(session_id, context)
        self.store.touch_session(session_id, namespace)
        self.store.push_lines(session_id, [f"{role}: {content}" for role, content in pairs])

    def wait_for_compactions(self, timeout: float = 10.0) -> None:
        self.store.wait_for_compactions(timeout)

    def wipe(self) -> None:
        """Lose every key, as a Motorhead whose Redis was flushed does."""
        self.store.wipe()

    def requests_for(self, method: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests if method is None or r.method == method]


class _Trace:
    summarized: list[str] = []
    dropped: list[str] = []
    summaries: list[str] = []


_EMPTY_TRACE = _Trace()


class _Handler(BaseHTTPRequestHandler):
    motorhead: MotorheadTestServer
    protocol_version = "HTTP/1.1"  # keep-alive, like actix
    # Headers and body leave in one segment (flushed per request): written
    # apart, Nagle and the client's delayed ACK add ~40 ms to every answer.
    wbufsize = -1
    disable_nagle_algorithm = True
    server_version = "motorhead-django-test"

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        with self.motorhead._connections_lock:
            self.motorhead._connections.add(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:
            if self.motorhead._httpd is not None:
                raise
            # stop() closed this connection under a request: a server that exits.

    def finish(self) -> None:
        with self.motorhead._connections_lock:
            self.motorhead._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            if self.motorhead._httpd is not None:
                raise

    def log_message(self, format: str, *args: Any) -> None:
        if self.motorhead.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_OPTIONS(self) -> None:
        self._handle("OPTIONS")

    def __getattr__(self, name: str) -> Any:
        # Any other method (PROPFIND, TRACE, ...): actix answers a bare 404, not 501.
        if name.startswith("do_"):
            return lambda: self._handle(name[3:])
        raise AttributeError(name)

    # -- dispatch ---------------------------------------------------------------

    def _handle(self, method: str) -> None:
        server = self.motorhead
        raw_path, _, query = self.path.partition("?")
        body = self._read_body()
        llm = server.openai.handles(raw_path)
        faults = server.llm_faults if llm else server.faults
        fault = faults.decide(method)
        server.requests.append(
            RecordedRequest(
                method,
                raw_path,
                query,
                dict(self.headers.items()),
                body,
                fault,
                peer=f"{self.client_address[0]}:{self.client_address[1]}",
            )
        )
        if fault in ("error", "reject", "drop", "echo"):
            self._fault(fault)
            return
        if llm:
            answer = server.openai.answer(method, raw_path, dict(self.headers.items()), body)
            status, content_type, payload = _json(*answer)
        else:
            status, content_type, payload = self._route(method, raw_path, query, body)
        if fault in ("apply_then_error", "apply_then_drop"):
            self._fault(fault.removeprefix("apply_then_"))
            return
        delay = faults.delay_for(method)
        if delay:
            time.sleep(delay)
        self._respond(status, content_type, payload)

    def _fault(self, how: str) -> None:
        if how == "error":
            self._respond(500, PLAIN, b"An error was signalled by the server: injected fault")
            return
        if how == "reject":
            self._respond(400, JSON, b'{"error":"injected rejection"}')
            return
        if how == "echo":
            self._respond(500, PLAIN, self._echo())
            return
        # A dropped connection: no status line at all.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _echo(self) -> bytes:
        # On the /v1 routes the key is the Bearer token.
        bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        key = self.headers.get("x-metal-api-key") or bearer
        client_id = self.headers.get("x-metal-client-id") or ""
        basic = base64.b64encode(f"{client_id}:{key}".encode()).decode()
        lines = [
            f"An error was signalled by the server: echo of {self.command} {self.path}",
            "headers: " + json.dumps(dict(self.headers.items())),
            f"x-metal-api-key: {key}",
            "json: " + json.dumps({"key": key, "client_id": client_id}),
            f"url: ?key={quote(key, safe='')}&client_id={quote(client_id, safe='')}",
            f"form: key={quote_plus(key)}&client_id={quote_plus(client_id)}",
            f"path: /keys/{quote(key)}/{quote(client_id)}",
            f"html: <b>{html.escape(key)}</b>",
            f"base64: {base64.b64encode(key.encode()).decode()} Basic {basic}",
        ]
        return "\n".join(lines).encode()

    def _route(
        self, method: str, raw_path: str, query: str, body: bytes
    ) -> tuple[int, str | None, bytes]:
        server = self.motorhead
        path = raw_path
        if server.prefix:
            if not path.startswith(server.prefix + "/") and path != server.prefix:
                return _not_found()
            path = path[len(server.prefix) :] or "/"
        # actix routes on the path decoded except %2F, %25 and %2B: an encoded
        # slash never splits a segment. The id itself is then fully decoded.
        segments = path.split("/")[1:]
        names = [unquote(segment) for segment in segments]
        if segments == [""] and method == "GET":
            return self._authorized(
                lambda: _json(200, self._wrap({"now": int(time.time() * 1000)}))
            )
        if names == ["sessions"] and method == "GET":
            return self._authorized(lambda: self._list_sessions(query))
        if len(segments) == 3 and names[0] == "sessions" and segments[1]:
            session_id = unquote(segments[1])
            if names[2] == "memory" and method in ("GET", "POST", "DELETE"):
                handler = {
                    "GET": self._get_memory,
                    "POST": self._post_memory,
                    "DELETE": self._delete_memory,
                }
                return self._authorized(lambda: handler[method](session_id, query, body))
            if names[2] == "retrieval" and method == "POST":
                return self._authorized(lambda: self._retrieval(session_id, body))
        return _not_found()

    def _authorized(self, answer: Any) -> tuple[int, str | None, bytes]:
        server = self.motorhead
        if server.hosted and (
            self.headers.get("x-metal-api-key") != server.api_key
            or self.headers.get("x-metal-client-id") != server.client_id
        ):
            return _json(
                401, {"message": "Unauthorized: check x-metal-api-key and x-metal-client-id"}
            )
        return answer()

    def _wrap(self, data: Any) -> Any:
        return {"data": data} if self.motorhead.hosted else data

    # -- routes -----------------------------------------------------------------

    def _list_sessions(self, query: str) -> tuple[int, str | None, bytes]:
        try:
            params = _query(query, {"page", "size", "namespace"})
            page = _usize(params.get("page", "1"))
            size = _usize(params.get("size", "10"))
        except ValueError as exc:
            return 400, PLAIN, f"Query deserialize error: {exc}".encode()
        if page > 100:
            return 400, PLAIN, b"Page size must not exceed 100"
        # usize arithmetic that wraps, then `as isize` (release build).
        start = _signed(((page - 1) * size) % _U64)
        end = _signed((page * size - 1) % _U64)
        ids = self.motorhead.store.list_sessions(params.get("namespace"), start, end)
        return _json(200, self._wrap(ids))

    def _namespace(self, query: str) -> str | None:
        return _query(query, {"namespace"}).get("namespace")

    def _get_memory(
        self, session_id: str, query: str, body: bytes
    ) -> tuple[int, str | None, bytes]:
        lines, context, tokens = self.motorhead.store.read_memory(session_id)
        messages = [
            {"role": role, "content": content}
            for role, content in filter(None, map(split_line, lines))
        ]
        if self.motorhead.hosted:
            return _json(200, {"data": {"messages": messages, "context": context}})
        return _json(200, {"messages": messages, "context": context, "tokens": tokens})

    def _post_memory(
        self, session_id: str, query: str, body: bytes
    ) -> tuple[int, str | None, bytes]:
        store = self.motorhead.store
        try:
            namespace = self._namespace(query)
        except ValueError as exc:
            return 400, PLAIN, f"Query deserialize error: {exc}".encode()
        try:
            messages, context = parse_memory_payload(self._json_text(body))
        except PayloadError as exc:
            return _json_error(str(exc))
        if context is not None:
            store.set_context(session_id, context)
        store.touch_session(session_id, namespace)
        if not messages:
            return (
                500,
                PLAIN,
                _LPUSH_ARITY_ERROR,
            )
        length = store.push_lines(session_id, [f"{role}: {content}" for role, content in messages])
        if store.long_term_memory:
            store.index_long_term(session_id, messages)
        store.maybe_compact(session_id, length)
        if self.motorhead.hosted:
            echo = [{"role": role, "content": content} for role, content in messages]
            return _json(200, {"data": {"messages": echo, "context": context}})
        return _json(200, {"status": "Ok"})

    def _delete_memory(
        self, session_id: str, query: str, body: bytes
    ) -> tuple[int, str | None, bytes]:
        try:
            namespace = self._namespace(query)
        except ValueError as exc:
            return 400, PLAIN, f"Query deserialize error: {exc}".encode()
        self.motorhead.store.delete(session_id, namespace)
        return _json(200, {"data": None} if self.motorhead.hosted else {"status": "Ok"})

    def _retrieval(self, session_id: str, body: bytes) -> tuple[int, str | None, bytes]:
        store = self.motorhead.store
        try:
            text = parse_retrieval_payload(self._json_text(body))
        except PayloadError as exc:
            return _json_error(str(exc))
        if not store.long_term_memory:
            return 400, None, b"Long term memory is disabled"
        # The id goes unescaped into a RediSearch TAG query: punctuation or
        # spaces (every UUID) are a syntax error there, hence a 500.
        if not session_id.replace("_", "a").isalnum():
            return 500, None, b"Internal server error"
        results = [
            {"role": role, "content": content, "dist": dist}
            for role, content, dist in store.search(session_id, text)
        ]
        return _json(200, self._wrap(results))

    # -- body -------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
            data = bytes(body)
        else:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "").lower()
        if encoding in ("gzip", "deflate"):
            data = zlib.decompress(
                data, 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
            )
        return data

    def _json_text(self, body: bytes) -> str:
        """The body as text, after actix's JsonConfig checks (content type, size, UTF-8)."""
        media = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        subtype = media.partition("/")[2]
        if not (subtype == "json" or subtype.endswith("+json")):
            raise PayloadError("Content type error")
        # actix checks the Content-Length header up front; a chunked (or
        # decompressed) body only fails while it streams, with another text.
        declared = self.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > JSON_LIMIT:
            raise PayloadError(
                f"JSON payload ({int(declared)} bytes) is larger than allowed "
                f"(limit: {JSON_LIMIT} bytes)."
            )
        if len(body) > JSON_LIMIT:
            raise PayloadError(f"JSON payload has exceeded limit ({JSON_LIMIT} bytes).")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadError(
                "Json deserialize error: invalid unicode code point at line 1 column 1"
            ) from None

    def _respond(self, status: int, content_type: str | None, payload: bytes) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def _json(status: int, data: Any) -> tuple[int, str | None, bytes]:
    return status, JSON, json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _json_error(message: str) -> tuple[int, str | None, bytes]:
    # main.rs formats the body with format!(r#"{"error":"{}"}"#): not escaped.
    return 400, JSON, ('{"error":"' + message + '"}').encode()


def _not_found() -> tuple[int, str | None, bytes]:
    return 404, None, b""


def _query(query: str, known: set[str]) -> dict[str, str]:
    """serde_urlencoded into a struct: unknown keys ignored, a repeated known key refused."""
    values: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        key, value = unquote_plus(key), unquote_plus(value)
        if key not in known:
            continue
        if key in values:
            raise ValueError(f"duplicate field `{key}`")
        values[key] = value
    return values


def _usize(text: str) -> int:
    """Rust's ``str::parse::<usize>``, with its error texts."""
    if text == "":
        raise ValueError("cannot parse integer from empty string")
    digits = text[1:] if text.startswith("+") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        raise ValueError("invalid digit found in string")
    value = int(digits)
    if value >= _U64:
        raise ValueError("number too large to fit in target type")
    return value


def _signed(value: int) -> int:
    return value - _U64 if value >= 2**63 else value
