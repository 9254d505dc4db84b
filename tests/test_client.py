"""The Motorhead client over real HTTP: the test server, and a raw server for odd answers."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured

from motorhead_django import __version__
from motorhead_django.client import Memory, Message, MotorheadClient, get_client
from motorhead_django.exceptions import (
    MotorheadClientError,
    MotorheadConfigurationError,
    MotorheadConnectError,
    MotorheadDisconnectedError,
    MotorheadError,
    MotorheadResponseError,
    MotorheadServerError,
    MotorheadTimeoutError,
    MotorheadValidationError,
    is_retryable,
    may_have_applied,
)

API_KEY = "sk-secret-key-0123456789"


@pytest.fixture
def server(motorhead_server_factory):
    return motorhead_server_factory(window_size=12, long_term_memory=True)


@pytest.fixture
def client(server) -> Iterator[MotorheadClient]:
    client = MotorheadClient(server.url, connect_timeout=1.0, read_timeout=1.0)
    yield client
    client.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[int, str, bytes], str]]:
    """A loopback HTTP server that answers every request with one fixed response."""
    servers: list[ThreadingHTTPServer] = []

    def start(status: int, content_type: str, body: bytes) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                echoed = body.replace(
                    b"{key}", (self.headers.get("x-metal-api-key") or "").encode()
                )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(echoed)))
                self.end_headers()
                self.wfile.write(echoed)

            def log_message(self, *args: object) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- routes --------------------------------------------------------------------


def test_health_is_the_servers_clock(client):
    assert client.health() > 1_700_000_000_000


def test_add_then_get_memory_newest_first(client, server):
    client.add_memory("s1", [("Human", "q1"), {"role": "AI", "content": "a1"}])
    client.add_memory("s1", [Message("Human", "q2")], context="they said hi")
    memory = client.get_memory("s1")
    assert isinstance(memory, Memory)
    assert [m.content for m in memory.messages] == ["q2", "a1", "q1"]
    assert [m.content for m in memory.chronological] == ["q1", "a1", "q2"]
    assert memory.context == "they said hi" and memory.tokens == 0
    assert json.loads(server.requests_for("POST")[0].body) == {
        "messages": [{"role": "Human", "content": "q1"}, {"role": "AI", "content": "a1"}]
    }


def test_get_memory_of_an_unknown_session_is_empty(client):
    assert client.get_memory("nobody") == Memory(messages=(), context=None, tokens=0)


def test_tokens_and_summary_after_compaction(client, server):
    for n in range(7):
        client.add_memory("long", [("Human", f"q{n}"), ("AI", f"a{n}")])
    server.wait_for_compactions()
    memory = client.get_memory("long")
    assert len(memory.messages) == 7 and memory.tokens > 0 and memory.context


def test_an_empty_batch_is_refused_before_sending(client, server):
    with pytest.raises(MotorheadValidationError) as raised:
        client.add_memory("s1", [], context="would be written by the server")
    assert "messages" in raised.value.errors
    assert server.requests == [] and server.context("s1") is None


def test_list_sessions_pages_and_namespaces(client):
    for name in ("a", "b", "c"):
        client.add_memory(name, [("Human", "x")])
    client.add_memory("n1", [("Human", "x")], namespace="tenant")
    # Written in id order, so the order holds whether or not a second boundary passed.
    assert client.list_sessions(page=1, size=2) == ["a", "b"]
    assert client.list_sessions(page=2, size=2) == ["c"]  # n1 is listed only in its namespace
    assert client.list_sessions(namespace="tenant") == ["n1"]


@pytest.mark.parametrize("page,size", [(0, 10), (101, 10), (1, 0)])
def test_list_sessions_refuses_what_the_server_misreads(client, server, page, size):
    with pytest.raises(MotorheadValidationError):
        client.list_sessions(page=page, size=size)
    assert server.requests == []


def test_delete_memory_with_its_namespace(client, server):
    client.add_memory("gone", [("Human", "x")], context="c", namespace="ns")
    client.delete_memory("gone", namespace="ns")
    assert client.get_memory("gone").messages == ()
    assert server.sessions("ns") == [] and server.context("gone") is None


def test_retrieve_ranks_by_distance(client):
    client.add_memory("ltm", [("Human", "I love green tea"), ("AI", "Coffee is bitter")])
    results = client.retrieve("ltm", "green tea please")
    assert [r.content for r in results][0] == "I love green tea"
    assert results[0].dist <= results[-1].dist and results[0].role == "Human"


def test_retrieve_without_long_term_memory_is_a_client_error(motorhead_server_factory):
    plain = motorhead_server_factory()
    with pytest.raises(MotorheadClientError) as raised:
        MotorheadClient(plain.url).retrieve("s", "text")
    assert raised.value.status == 400 and raised.value.body == "Long term memory is disabled"
    assert not is_retryable(raised.value)


@pytest.mark.parametrize(
    "session_id", ["a/b", "../x", "..", ".", "x?y#z", " spaced ", "ünïcødé", "a+b", "100%"]
)
def test_ids_are_one_path_segment_exactly(client, server, session_id):
    client.add_memory(session_id, [("Human", "hello")])
    assert server.stored_messages(session_id) == [{"role": "Human", "content": "hello"}]
    assert client.get_memory(session_id).messages == (Message("Human", "hello"),)
    path = server.requests[0].path
    assert path.startswith("/sessions/") and path.endswith("/memory")
    assert path.count("/") == 3, path


def test_user_agent_and_no_metal_headers_when_self_hosted(client, server):
    client.health()
    headers = {k.lower(): v for k, v in server.requests[0].headers.items()}
    assert headers["user-agent"] == "motorhead-django"
    assert "x-metal-api-key" not in headers and "x-metal-client-id" not in headers


# -- the hosted (Metal) variant ---------------------------------------------------


@pytest.fixture
def hosted(motorhead_server_factory):
    return motorhead_server_factory(
        hosted=True, api_key=API_KEY, client_id="client-1", prefix="/v1/motorhead"
    )


def test_hosted_sends_the_metal_headers_and_unwraps_data(hosted):
    client = MotorheadClient(hosted.url, api_key=API_KEY, client_id="client-1")
    client.add_memory("h1", [("Human", "hi")], context="ctx")
    assert client.get_memory("h1") == Memory((Message("Human", "hi"),), "ctx", 0)
    assert client.list_sessions() == ["h1"]
    client.delete_memory("h1")
    assert client.get_memory("h1").messages == ()
    headers = {k.lower(): v for k, v in hosted.requests[0].headers.items()}
    assert headers["x-metal-api-key"] == API_KEY and headers["x-metal-client-id"] == "client-1"
    assert hosted.requests[0].path == "/v1/motorhead/sessions/h1/memory"


def test_hosted_wrong_key_is_a_final_client_error_without_the_key(hosted, caplog):
    wrong = "sk-wrong-key-9876543210"
    client = MotorheadClient(hosted.url, api_key=wrong, client_id="client-1")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(MotorheadClientError) as raised:
        client.add_memory("h1", [("Human", "hi")])
    error = raised.value
    assert error.status == 401 and not is_retryable(error) and not may_have_applied(error)
    for text in (str(error), repr(error), error.body, repr(client), caplog.text):
        assert wrong not in text
    assert "x-metal" in error.body  # the server's own message is kept


def test_a_body_that_echoes_the_key_is_redacted(raw_server):
    url = raw_server(403, "application/json", b'{"message": "bad key {key}"}')
    with pytest.raises(MotorheadClientError) as raised:
        MotorheadClient(url, api_key=API_KEY, client_id="c").health()
    assert API_KEY not in str(raised.value) and API_KEY not in raised.value.body
    assert "[redacted]" in raised.value.body


# -- failures, by kind --------------------------------------------------------------


def test_refused_connection_means_nothing_was_sent():
    client = MotorheadClient(f"http://127.0.0.1:{free_port()}", connect_timeout=1.0)
    with pytest.raises(MotorheadConnectError) as raised:
        client.add_memory("s", [("Human", "x")])
    error = raised.value
    assert isinstance(error, requests.ConnectionError)  # existing handlers still catch it
    assert is_retryable(error) and not may_have_applied(error)
    assert "POST /sessions/s/memory" in str(error)


def test_a_read_timeout_is_ambiguous_and_the_write_did_land(client, server):
    server.faults.latency = 1.5
    with pytest.raises(MotorheadTimeoutError) as raised:
        client.add_memory("slow", [("Human", "x")])
    assert isinstance(raised.value, requests.Timeout)
    assert may_have_applied(raised.value) and is_retryable(raised.value)
    assert server.stored_messages("slow") == [{"role": "Human", "content": "x"}]


@pytest.mark.parametrize("mode,stored", [("apply_then_drop", 1), ("drop", 0)])
def test_a_dropped_connection_is_ambiguous_whether_or_not_it_landed(client, server, mode, stored):
    server.faults.fail_next(1, mode=mode)
    with pytest.raises(MotorheadDisconnectedError) as raised:
        client.add_memory("dropped", [("Human", "x")])
    assert isinstance(raised.value, requests.ConnectionError)
    assert may_have_applied(raised.value) and is_retryable(raised.value)
    assert len(server.stored_messages("dropped")) == stored


@pytest.mark.parametrize("mode,stored", [("apply_then_error", 1), ("error", 0)])
def test_a_5xx_may_have_been_applied(client, server, mode, stored):
    server.faults.fail_next(1, mode=mode)
    with pytest.raises(MotorheadServerError) as raised:
        client.add_memory("five", [("Human", "x")])
    assert raised.value.status == 500 and "injected fault" in raised.value.body
    assert may_have_applied(raised.value) and is_retryable(raised.value)
    assert len(server.stored_messages("five")) == stored


def test_a_4xx_carries_the_servers_body(client, server):
    # The server's own 400 for a bad body, reached with a raw role that is not a string.
    response = requests.post(f"{server.url}/sessions/x/memory", json={"messages": [5]}, timeout=5)
    assert response.status_code == 400
    with pytest.raises(MotorheadValidationError):
        client.add_memory("x", [5])  # refused locally, never sent


@pytest.mark.parametrize(
    "status,content_type,body",
    [
        (200, "text/html", b"<html>a proxy page</html>"),
        (200, "application/json", b'{"messages": "not a list"}'),
        (200, "application/json", b'{"messages": [{"role": 1}]}'),
    ],
)
def test_an_unreadable_answer_is_a_response_error(raw_server, status, content_type, body):
    client = MotorheadClient(raw_server(status, content_type, body))
    with pytest.raises(MotorheadResponseError) as raised:
        client.get_memory("s")
    assert may_have_applied(raised.value) and is_retryable(raised.value)


def test_an_error_page_that_is_not_json_is_still_a_status_error(raw_server):
    client = MotorheadClient(raw_server(502, "text/html", b"<h1>Bad gateway</h1>"))
    with pytest.raises(MotorheadServerError) as raised:
        client.health()
    assert raised.value.status == 502 and "Bad gateway" in str(raised.value)


def test_every_error_is_a_motorhead_error_and_config_errors_are_not():
    assert issubclass(MotorheadTimeoutError, MotorheadError)
    assert issubclass(MotorheadConfigurationError, ImproperlyConfigured)
    assert not issubclass(MotorheadConfigurationError, MotorheadError)
    assert not is_retryable(ValueError("unknown errors are final"))


# -- configuration ---------------------------------------------------------------------


def test_get_client_follows_the_setting(settings, server):
    settings.MOTORHEAD = {"URL": server.url, "READ_TIMEOUT": 2.5}
    first = get_client()
    assert get_client() is first and first.timeout == (3.05, 2.5)
    assert first.user_agent == f"motorhead-django/{__version__}"
    settings.MOTORHEAD = {"URL": server.url, "API_KEY": API_KEY, "CLIENT_ID": "c"}
    second = get_client()
    assert second is not first and second.hosted and API_KEY not in repr(second)


def test_local_only_mode_has_no_client(settings):
    settings.MOTORHEAD = {}
    with pytest.raises(MotorheadConfigurationError, match="No Motorhead URL"):
        get_client()


def test_one_pooled_connection_serves_many_calls(client, server):
    for _ in range(5):
        client.health()
    assert len(server.requests) == 5
    assert len({r.peer for r in server.requests}) == 1  # five calls, one TCP connection


def test_the_proxy_comes_from_the_environment_as_with_requests(monkeypatch, server):
    # The test server stands in for a proxy: it sees the absolute-form request.
    monkeypatch.setenv("HTTP_PROXY", server.url)
    with pytest.raises(MotorheadClientError):
        MotorheadClient("http://motorhead.invalid:8080").health()
    assert server.requests[0].path == "http://motorhead.invalid:8080/"

    monkeypatch.setenv("NO_PROXY", "motorhead.invalid")
    with pytest.raises(MotorheadConnectError):
        MotorheadClient("http://motorhead.invalid:8080", connect_timeout=1.0).health()
    assert len(server.requests) == 1
