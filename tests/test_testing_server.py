"""The Motorhead test server against MOTORHEAD_API.md, over real HTTP on loopback."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

PLAIN = "text/plain; charset=utf-8"
LPUSH_ERROR = "An error was signalled by the server: wrong number of arguments for 'lpush' command"


@pytest.fixture
def server(motorhead_server_factory):
    return motorhead_server_factory()


def msgs(*lines: str) -> list[dict[str, str]]:
    """``"Human: hi"`` strings into message dicts (split at the first ": ")."""
    return [dict(zip(("role", "content"), line.split(": ", 1), strict=True)) for line in lines]


def pair(n: int) -> list[dict[str, str]]:
    return msgs(f"Human: q{n}", f"AI: a{n}")


def post(server, session_id: str, messages, query: str = "", **body) -> requests.Response:
    url = f"{server.url}/sessions/{session_id}/memory{query}"
    return requests.post(url, json={"messages": messages, **body}, timeout=5)


def get(server, session_id: str, query: str = "") -> dict:
    response = requests.get(f"{server.url}/sessions/{session_id}/memory{query}", timeout=5)
    assert response.status_code == 200
    return response.json()


def sessions(server, query: str = "") -> requests.Response:
    return requests.get(f"{server.url}/sessions{query}", timeout=5)


def raw(server, method: str, path: str, body: bytes | None = None, headers=None, **kwargs):
    """One request with an exact path and exact headers: (status, Content-Type, body)."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        connection.request(method, path, body=body, headers=headers or {}, **kwargs)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def post_raw(server, path: str, body: bytes):
    return raw(server, "POST", path, body, {"Content-Type": "application/json"})


def contents(memory: dict) -> list[str]:
    return [m["content"] for m in memory["messages"]]


# -- GET / and GET memory ----------------------------------------------------------


def test_health_reports_the_time_in_milliseconds(server):
    response = requests.get(f"{server.url}/", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    now = response.json()["now"]
    assert isinstance(now, int) and abs(now - time.time() * 1000) < 5000


def test_unknown_session_is_empty_and_get_creates_nothing(server):
    status, content_type, body = raw(server, "GET", "/sessions/nobody/memory")
    assert (status, content_type) == (200, "application/json")
    assert body == b'{"messages":[],"context":null,"tokens":0}'
    assert sessions(server).json() == []


def test_post_answers_ok_and_get_is_newest_first(server):
    response = post(server, "s", pair(1))
    assert response.status_code == 200 and response.json() == {"status": "Ok"}
    post(server, "s", pair(2))
    memory = get(server, "s")
    assert list(memory) == ["messages", "context", "tokens"]
    assert memory["messages"] == msgs("AI: a2", "Human: q2", "AI: a1", "Human: q1")
    assert memory["context"] is None and memory["tokens"] == 0


def test_get_returns_window_size_plus_one_messages(motorhead_server_factory):
    server = motorhead_server_factory(window_size=4)
    server.faults.summarizer_fails = True  # keep the list long
    post(server, "s", msgs(*(f"Human: m{n}" for n in range(8))))
    server.wait_for_compactions()
    memory = get(server, "s")
    assert contents(memory) == ["m7", "m6", "m5", "m4", "m3"]


def test_roles_are_free_text_and_lines_split_at_the_first_colon_space(server):
    post(server, "s", [{"role": "Human: x", "content": "y"}, {"role": "", "content": "z"}])
    post(server, "s", msgs("assistant: b", "user: a"))
    assert get(server, "s")["messages"] == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "", "content": "z"},
        {"role": "Human", "content": "x: y"},
    ]


def test_posted_context_overwrites_and_namespace_only_affects_listing(server):
    post(server, "s", pair(1), query="?namespace=ns", context="first")
    post(server, "s", pair(2), context="second")
    post(server, "s", pair(3), context=None)
    assert get(server, "s")["context"] == "second"
    assert get(server, "s", "?namespace=other") == get(server, "s")
    assert sessions(server, "?namespace=ns").json() == ["s"]
    assert sessions(server, "?namespace=other").json() == []


# -- compaction (section 4) --------------------------------------------------------


def test_compaction_trims_to_half_plus_one_and_drops_the_oldest(server):
    for n in range(1, 7):
        post(server, "s", pair(n))
    assert len(get(server, "s")["messages"]) == 12
    post(server, "s", pair(7))  # length 14 > 12
    server.wait_for_compactions()
    memory = get(server, "s")
    assert contents(memory) == ["a7", "q7", "a6", "q6", "a5", "q5", "a4"]
    summarized = "AI: a1|Human: q2|AI: a2|Human: q3|AI: a3|Human: q4|AI: a4"
    assert server.summarized_lines("s") == summarized.split("|")
    assert server.dropped_lines("s") == ["Human: q1"]
    assert isinstance(memory["context"], str) and memory["context"]
    assert memory["tokens"] > 0

    lengths, tokens = [], [memory["tokens"]]
    for n in range(8, 12):
        post(server, "s", pair(n))
        server.wait_for_compactions()
        memory = get(server, "s")
        lengths.append(len(server.stored_lines("s")))
        tokens.append(memory["tokens"])
    assert lengths == [9, 11, 7, 9]
    assert tokens[0] == tokens[1] == tokens[2] < tokens[3] == tokens[4]


def test_one_big_post_keeps_seven_and_drops_seventeen(server):
    post(server, "s", msgs(*(f"Human: m{n}" for n in range(30))))
    server.wait_for_compactions()
    assert contents(get(server, "s")) == [f"m{n}" for n in range(29, 22, -1)]
    assert server.summarized_lines("s") == [f"Human: m{n}" for n in range(17, 24)]
    assert server.dropped_lines("s") == [f"Human: m{n}" for n in range(17)]


def test_repeated_lines_are_still_reported_as_dropped(server):
    post(server, "s", msgs(*["Human: same"] * 14))
    server.wait_for_compactions()
    assert len(server.summarized_lines("s")) == 7
    assert server.dropped_lines("s") == ["Human: same"]


def test_failing_summarizer_trims_nothing(server):
    server.faults.summarizer_fails = True
    for n in range(1, 9):
        post(server, "s", pair(n))
        server.wait_for_compactions()
    memory = get(server, "s")
    assert len(memory["messages"]) == 13 and len(server.stored_lines("s")) == 16
    assert memory["context"] is None and memory["tokens"] == 0


def test_get_during_a_slow_compaction_shows_the_old_window(motorhead_server_factory):
    server = motorhead_server_factory(compaction_delay=0.5)
    post(server, "s", pair(1), context="old")
    for n in range(2, 8):
        post(server, "s", pair(n))
    during = get(server, "s")
    assert len(during["messages"]) == 13 and during["context"] == "old"
    server.wait_for_compactions()
    after = get(server, "s")
    assert len(after["messages"]) == 7 and after["context"] not in (None, "old")


def gated(server_factory):
    """A server whose summariser waits for ``go`` once it has read its batch."""
    started, go = threading.Event(), threading.Event()

    def summarize(previous, lines):
        started.set()
        assert go.wait(5)
        return f"summary of {len(lines)} lines", 42

    return server_factory(summarizer=summarize), started, go


def test_posts_during_a_compaction_shift_the_window_and_lose_lines(motorhead_server_factory):
    server, started, go = gated(motorhead_server_factory)
    for n in range(1, 8):
        post(server, "s", pair(n))
    assert started.wait(5)
    post(server, "s", pair(8))  # the batch (a4..a1) moves two places down
    go.set()
    server.wait_for_compactions()
    assert contents(get(server, "s")) == ["a8", "q8", "a7", "q7", "a6", "q6", "a5"]
    assert server.dropped_lines("s") == ["Human: q1", "Human: q5"]


def test_delete_during_a_compaction_recreates_context_and_tokens(motorhead_server_factory):
    server, started, go = gated(motorhead_server_factory)
    for n in range(1, 8):
        post(server, "s", pair(n))
    assert started.wait(5)
    requests.delete(f"{server.url}/sessions/s/memory", timeout=5)
    go.set()
    server.wait_for_compactions()
    assert get(server, "s") == {"messages": [], "context": "summary of 7 lines", "tokens": 42}
    assert sessions(server).json() == []


# -- POST errors (sections 2.4, 2.7) ----------------------------------------------


def test_empty_messages_is_a_500_after_writing_context_and_listing(server):
    response = post(server, "s", [], context="kept")
    assert response.status_code == 500
    assert response.headers["Content-Type"] == PLAIN
    assert response.text == LPUSH_ERROR
    assert get(server, "s") == {"messages": [], "context": "kept", "tokens": 0}
    assert sessions(server).json() == ["s"]


def json_error(server, body: bytes, headers=None, path="/sessions/s/memory", **kwargs) -> str:
    headers = {"Content-Type": "application/json"} if headers is None else headers
    status, content_type, answer = raw(server, "POST", path, body, headers, **kwargs)
    assert (status, content_type) == (400, "application/json")
    text = answer.decode()
    assert text.startswith('{"error":"') and text.endswith('"}')
    return text[len('{"error":"') : -2].split(" at line")[0]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "Json deserialize error: EOF while parsing a value"),
        (b"{}", "Json deserialize error: missing field `messages`"),
        (b'{"messages":[{"role":"AI"}]}', "Json deserialize error: missing field `content`"),
        (
            b'{"messages":[{"role":"AI","content":5}]}',
            "Json deserialize error: invalid type: integer `5`, expected a string",
        ),
        (b'{"messages":null}', "Json deserialize error: invalid type: null, expected a sequence"),
        (b'{"messages":[],"messages":[]}', "Json deserialize error: duplicate field `messages`"),
        (b'{"messages":[}', "Json deserialize error: expected value"),
        (b'{"messages":[]} x', "Json deserialize error: trailing characters"),
        (b'{"messages":NaN}', "Json deserialize error: expected value"),
    ],
)
def test_json_body_errors(server, body, error):
    assert json_error(server, body) == error
    assert server.sessions() == []


def test_wrong_type_error_body_is_not_valid_json(server):
    status, _, body = post_raw(server, "/sessions/s/memory", b'{"messages": "x"}')
    assert status == 400
    assert body.startswith(
        b'{"error":"Json deserialize error: invalid type: string "x", expected a sequence at line'
    )
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


def test_content_type_is_required(server):
    assert json_error(server, b'{"messages":[]}', headers={}) == "Content type error"
    text = {"Content-Type": "text/plain"}
    assert json_error(server, b'{"messages":[]}', headers=text) == "Content type error"


def test_bodies_over_two_mebibytes_are_refused(server):
    big = b'{"messages":[],"context":"' + b"x" * 2_097_152 + b'"}'
    assert json_error(server, big) == (
        f"JSON payload ({len(big)} bytes) is larger than allowed (limit: 2097152 bytes)."
    )
    chunks = iter([big[:1000], big[1000:]])
    assert json_error(server, chunks, encode_chunked=True) == (
        "JSON payload has exceeded limit (2097152 bytes)."
    )


def test_duplicate_namespace_is_a_query_error(server):
    for method in ("POST", "DELETE"):
        url = f"{server.url}/sessions/s/memory?namespace=a&namespace=b"
        response = requests.request(method, url, json={"messages": pair(1)}, timeout=5)
        assert (response.status_code, response.headers["Content-Type"]) == (400, PLAIN)
        assert response.text == "Query deserialize error: duplicate field `namespace`"
    assert server.sessions() == [] and server.stored_lines("s") == []


def test_positional_array_body_and_unknown_fields_are_accepted(server):
    assert post_raw(server, "/sessions/s/memory", b'[[["Human","hi"]], "c"]')[0] == 200
    assert post(server, "s", msgs("AI: yo"), extra=1).status_code == 200
    assert get(server, "s")["messages"] == msgs("AI: yo", "Human: hi")


# -- DELETE (section 2.5) ----------------------------------------------------------


def test_delete_is_always_ok_and_removes_everything(server):
    assert requests.delete(f"{server.url}/sessions/ghost/memory", timeout=5).json() == {
        "status": "Ok"
    }
    post(server, "s", msgs(*["Human: m"] * 13), context="c")
    server.wait_for_compactions()
    assert get(server, "s")["tokens"] > 0
    response = requests.delete(f"{server.url}/sessions/s/memory", timeout=5)
    assert response.status_code == 200 and response.json() == {"status": "Ok"}
    assert get(server, "s") == {"messages": [], "context": None, "tokens": 0}
    assert sessions(server).json() == []


def test_delete_without_the_namespace_leaves_the_listing(server):
    post(server, "s", pair(1), query="?namespace=ns")
    requests.delete(f"{server.url}/sessions/s/memory", timeout=5)
    assert get(server, "s")["messages"] == []
    assert sessions(server, "?namespace=ns").json() == ["s"]
    requests.delete(f"{server.url}/sessions/s/memory?namespace=ns", timeout=5)
    assert sessions(server, "?namespace=ns").json() == []


# -- GET /sessions (section 2.2) ---------------------------------------------------


def next_second() -> None:
    time.sleep(1 - time.time() % 1 + 0.01)


def test_sessions_are_ordered_by_last_post_second_then_id(server):
    next_second()
    for session_id in ("c", "b", "B"):
        post(server, session_id, pair(1))
    assert sessions(server).json() == ["B", "b", "c"]
    next_second()
    post(server, "a", pair(1))
    post(server, "b", pair(2))
    assert sessions(server).json() == ["B", "c", "a", "b"]


def test_sessions_pagination_and_namespaces(server):
    for n in range(5):
        post(server, f"s{n}", pair(1))
    post(server, "other", pair(1), query="?namespace=ns")
    assert sessions(server).json() == ["s0", "s1", "s2", "s3", "s4"]
    assert sessions(server, "?page=2&size=2").json() == ["s2", "s3"]
    assert sessions(server, "?page=%2B2&size=2").json() == ["s2", "s3"]
    assert sessions(server, "?page=0&size=2").json() == ["s3", "s4"]
    assert sessions(server, "?size=0").json() == ["s0", "s1", "s2", "s3", "s4"]
    assert sessions(server, "?page=100&size=1&whatever=x").json() == []
    assert sessions(server, "?namespace=ns").json() == ["other"]


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ("page=101", "Page size must not exceed 100"),
        ("page=abc", "Query deserialize error: invalid digit found in string"),
        ("page=-1", "Query deserialize error: invalid digit found in string"),
        ("page=+2", "Query deserialize error: invalid digit found in string"),
        ("page=", "Query deserialize error: cannot parse integer from empty string"),
        (f"size={2**64}", "Query deserialize error: number too large to fit in target type"),
        ("page=1&page=2", "Query deserialize error: duplicate field `page`"),
    ],
)
def test_sessions_query_errors(server, query, body):
    status, content_type, answer = raw(server, "GET", f"/sessions?{query}")
    assert (status, content_type, answer.decode()) == (400, PLAIN, body)


# -- routing and ids (sections 2, 2.8) ---------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("PUT", "/sessions/s/memory"),
        ("PATCH", "/sessions/s/memory"),
        ("POST", "/sessions"),
        ("GET", "/sessions/s/retrieval"),
        ("PROPFIND", "/"),
        ("GET", "/sessions/"),
        ("GET", "/sessions/s/memory/"),
        ("HEAD", "/"),
        ("HEAD", "/sessions/s/memory"),
        ("GET", "/sessions//memory"),
        ("GET", "/sessions/a%2Fb/memory%2F"),
    ],
)
def test_unmatched_requests_are_bare_404s(server, method, path):
    assert raw(server, method, path) == (404, None, b"")


@pytest.mark.parametrize(
    ("path_id", "session_id"),
    [("a%2Fb", "a/b"), ("a%20b", "a b"), ("a+b", "a+b"), ("a%2Bb", "a+b"), ("%2E%2E", "..")],
)
def test_session_ids_are_percent_decoded(server, path_id, session_id):
    body = json.dumps({"messages": msgs("Human: hi")}).encode()
    assert post_raw(server, f"/sessions/{path_id}/memory", body)[0] == 200
    assert server.stored_lines(session_id) == ["Human: hi"]
    assert sessions(server).json() == [session_id]
    status, _, answer = raw(server, "GET", f"/sessions/{path_id}/memory")
    assert status == 200 and json.loads(answer)["messages"] == msgs("Human: hi")


# -- retrieval (sections 2.6, 5) ---------------------------------------------------


def retrieve(server, session_id: str, text: str) -> requests.Response:
    url = f"{server.url}/sessions/{session_id}/retrieval"
    return requests.post(url, json={"text": text}, timeout=5)


def test_retrieval_is_disabled_without_long_term_memory(server):
    answer = post_raw(server, "/sessions/s/retrieval", b'{"text":"x"}')
    assert answer == (400, None, b"Long term memory is disabled")
    # The JSON body is extracted before the feature check.
    assert json_error(server, b"{}", path="/sessions/s/retrieval") == (
        "Json deserialize error: missing field `text`"
    )
    assert json_error(server, b"{}", {}, path="/sessions/s/retrieval") == "Content type error"


def test_retrieval_ranks_by_ascending_distance(motorhead_server_factory):
    server = motorhead_server_factory(long_term_memory=True)
    filler = [f"Human: filler number {n}" for n in range(10)]
    post(server, "s", msgs(*filler, "AI: the cat sat on the mat", "Human: a cat"))
    post(server, "other", msgs("Human: the cat sat on the mat"))
    response = retrieve(server, "s", "cat on the mat")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    results = response.json()
    assert len(results) == 10
    assert all(set(result) == {"role", "content", "dist"} for result in results)
    distances = [result["dist"] for result in results]
    assert distances == sorted(distances)
    assert results[0] == {"role": "AI", "content": "the cat sat on the mat", "dist": distances[0]}
    assert results[1]["content"] == "a cat"


def test_retrieval_with_a_uuid_like_id_is_a_500(motorhead_server_factory):
    server = motorhead_server_factory(long_term_memory=True)
    session_id = "0b6f7c1e-8a3d-4d2e-9c1f-3e2a1b0c9d8e"
    post(server, session_id, msgs("Human: hi"))
    response = retrieve(server, session_id, "hi")
    assert (response.status_code, response.text) == (500, "Internal server error")
    assert "Content-Type" not in response.headers


# -- hosted variant (section 6) ----------------------------------------------------


def test_hosted_variant_checks_headers_and_wraps_in_data(motorhead_server_factory):
    hosted = {"hosted": True, "api_key": "key", "client_id": "client", "prefix": "/v1/motorhead"}
    server = motorhead_server_factory(**hosted, long_term_memory=True)
    good = {"x-metal-api-key": "key", "x-metal-client-id": "client"}
    memory_url = f"{server.url}/sessions/s/memory"
    assert server.url.endswith("/v1/motorhead")
    for headers in ({}, {"x-metal-api-key": "key"}, {**good, "x-metal-api-key": "nope"}):
        assert requests.get(memory_url, headers=headers, timeout=5).status_code == 401
    posted = {"messages": pair(1), "context": "c"}
    response = requests.post(memory_url, json=posted, headers=good, timeout=5)
    assert response.status_code == 200 and response.json() == {"data": posted}
    assert requests.get(memory_url, headers=good, timeout=5).json() == {
        "data": {"messages": msgs("AI: a1", "Human: q1"), "context": "c"}
    }
    listing = requests.get(f"{server.url}/sessions", headers=good, timeout=5)
    assert listing.json() == {"data": ["s"]}
    retrieval_url = f"{server.url}/sessions/s/retrieval"
    found = requests.post(retrieval_url, json={"text": "q1"}, headers=good, timeout=5)
    assert found.json()["data"][0]["content"] == "q1"


# -- faults ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "stored"),
    [("error", False), ("drop", False), ("apply_then_error", True), ("apply_then_drop", True)],
)
def test_injected_faults(server, mode, stored):
    server.faults.fail_next(mode=mode)
    if mode.endswith("drop"):
        with pytest.raises(requests.ConnectionError):
            post(server, "s", pair(1))
    else:
        assert post(server, "s", pair(1)).status_code == 500
    assert server.stored_lines("s") == (["Human: q1", "AI: a1"] if stored else [])
    assert post(server, "t", pair(1)).status_code == 200  # the fault was used up


def test_seeded_fail_rate_is_reproducible(motorhead_server_factory):
    runs = []
    for _ in range(2):
        server = motorhead_server_factory(seed=7)
        server.faults.fail_rate, server.faults.fail_mode = 0.5, "error"
        runs.append([requests.get(f"{server.url}/", timeout=5).status_code for _ in range(20)])
    assert runs[0] == runs[1] and {200, 500} == set(runs[0])


def test_latency_can_target_one_method_and_requests_are_recorded(server):
    server.faults.latency, server.faults.methods = 0.4, {"POST"}
    started = time.monotonic()
    post(server, "s", pair(1))
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    get(server, "s")
    assert time.monotonic() - started < 0.3
    recorded = [(r.method, r.path) for r in server.requests]
    assert recorded == [("POST", "/sessions/s/memory"), ("GET", "/sessions/s/memory")]
    assert json.loads(server.requests[0].body) == {"messages": pair(1)}


# -- the command line --------------------------------------------------------------


def test_cli_prints_its_url_serves_and_stops_on_sigterm():
    process = subprocess.Popen(
        [sys.executable, "-m", "motorhead_django.testing", "--port", "0"],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline().strip()
        match = re.fullmatch(r"Motorhead test server listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        assert requests.get(f"{match.group(1)}/", timeout=5).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
