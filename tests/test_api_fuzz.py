"""Schemathesis against the served OpenAPI schema: no 5xx, no response the schema does not allow.

Every operation of both surfaces (``/api/`` and ``/motorhead/``) in the example project's
schema gets schema-valid and schema-invalid requests, in-process through the WSGI app, on
pytest-django's test database, authenticated as a REST user (token) who also owns an API
key. The run is derandomized, so it is the same on every machine. Run it alone with
``.venv/bin/python -m pytest tests/test_api_fuzz.py``.

Schemathesis sends what JSON Schema describes, so bodies nested a thousand levels deep,
lone surrogates (``"\\ud800"``) and NUL characters are rarely or never drawn: every
operation also gets those explicitly (``test_no_operation_fails_on_hostile_input``).
Run with DATABASE_URL=postgres://… too: PostgreSQL is the database that refuses them.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from django.test.utils import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from motorhead_django import memory
from motorhead_django.models import ApiKey

URLS = "example_project.urls"
EXAMPLES = 25  # per operation and per mode (valid, invalid)
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]

# Hypothesis and schemathesis draw hundreds of requests per operation: seconds each.
pytestmark = [pytest.mark.django_db, pytest.mark.urls(URLS), pytest.mark.slow]

# Loaded at collection, so each operation is its own test; the schema view needs no database.
with override_settings(ROOT_URLCONF=URLS):
    SCHEMA = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


def test_every_route_is_fuzzed():
    assert len(OPERATIONS) == 21


@pytest.fixture(autouse=True)
def _one_connection():
    """Keep the test's transaction open across requests, as Django's test client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def credentials() -> dict[str, str]:
    user = get_user_model().objects.create(username="fuzz")
    token = Token.objects.create(user=user)
    _, key = ApiKey.issue(user, "fuzz")
    return {"Authorization": f"Token {token.key}", "x-metal-api-key": key}


def _known_session() -> Any:
    owner = get_user_model().objects.get(username="fuzz")
    session = memory.get_or_create_session("fuzz", owner=owner)
    if not session.messages.exists():
        memory.append_messages(session, [("Human", "hello fuzz"), ("AI", "hi")])
    return session


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
@pytest.mark.parametrize("mode", list(GenerationMode), ids=str)
def test_the_api_answers_as_its_schema_says(operation, mode, credentials):
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        # Invalid requests are drawn by filtering; EXAMPLES is the budget, not these heuristics.
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode), known=st.booleans())
    def run(case, known):
        # Half the cases address a session that exists, so they get past the 404.
        if known:
            session = _known_session()
            if "id" in case.path_parameters:
                case.path_parameters["id"] = str(session.pk)
            if "session_id" in case.path_parameters:
                case.path_parameters["session_id"] = session.session_id
        case.call_and_validate(headers=credentials, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        if mode == GenerationMode.POSITIVE:
            raise
        # GET /motorhead/ has no input; the REST routes whose only input is the {id} path
        # parameter take any string there (a 404 when it names no session).
        pytest.skip("no request the schema forbids can be sent: no input but a free-text id")


# -- hostile input schemathesis does not draw ---------------------------------------------

DEEP = "[" * 1000 + "]" * 1000
SURROGATE = '"\\ud800"'  # JSON text for a lone surrogate
# JSON texts (not Python values): a lone surrogate can only be sent escaped.
HOSTILE_VALUES = [
    SURROGATE,
    '"a\\u0000b"',
    DEEP,
    '"Human: x"',
    '"a\\nb"',
    "9" * 5000,
    "NaN",
    "1e999",
]
BODY_FIELDS = (
    "session_id",
    "namespace",
    "metadata",
    "context",
    "role",
    "content",
    "text",
    "action",
)
HOSTILE_PARAMETERS = ["%00", "%ED%A0%80", "--created_at", "9" * 40, "-1", "%0A", "x" * 2000]


def _hostile_bodies() -> list[str]:
    bodies = [DEEP, "{" * 1000, '"' + "\\" * 1000, "[" * 100_000]
    for value in HOSTILE_VALUES:
        bodies.append('{"metadata": {"k": %s}}' % value)  # noqa: UP031 (JSON braces)
        bodies.append('{"metadata": {%s: 1}}' % value)  # noqa: UP031
        for name in BODY_FIELDS:
            bodies.append(
                json.dumps({"session_id": "h", "role": "Human", "content": "x"})[:-1]
                + f', "{name}": {value}}}'
            )
            message = '{"role": "Human", "content": "x", "%s": %s}' % (name, value)  # noqa: UP031
            bodies.append('{"messages": [%s], "context": null}' % message)  # noqa: UP031
    return bodies


HOSTILE_BODIES = _hostile_bodies()


def _url(operation: Any, path_value: str, query: str = "") -> str:
    path = operation.path.replace("{id}", path_value).replace("{session_id}", path_value)
    return path + (f"?{query}" if query else "")


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_no_operation_fails_on_hostile_input(operation, credentials):
    """Deep nesting, lone surrogates, NUL, roles Motorhead splits, unconvertible numbers and
    crafted parameters: a 4xx on every operation, never a 5xx."""
    client = Client(
        raise_request_exception=False,
        HTTP_AUTHORIZATION=credentials["Authorization"],
        HTTP_X_METAL_API_KEY=credentials["x-metal-api-key"],
    )
    session = _known_session()
    known = str(session.pk) if "{id}" in operation.path else session.session_id
    definition = operation.definition.raw
    method = operation.method.lower()
    seen = []

    def send(url: str, body: str | None = None) -> None:
        send_method = getattr(client, method)
        if body is None:
            response = send_method(url)
        else:
            response = send_method(url, body, content_type="application/json")
        seen.append(response.status_code)
        assert response.status_code < 500, (url, (body or "")[:200], response.content[:300])

    if "requestBody" in definition:
        for body in HOSTILE_BODIES:
            send(_url(operation, known), body)
    for parameter in definition.get("parameters", []):
        for value in HOSTILE_PARAMETERS:
            if parameter["in"] == "query":
                send(_url(operation, known, f"{parameter['name']}={value}"))
            elif parameter["in"] == "path":
                send(_url(operation, quote(value, safe="%")))
    # Whatever was refused left nothing unreadable behind: every list still renders.
    assert client.get("/api/sessions/").status_code == 200
    assert client.get("/motorhead/sessions").status_code == 200
    assert client.get(f"/api/sessions/{session.pk}/messages/").status_code == 200
    if "requestBody" in definition or definition.get("parameters"):
        assert seen and any(400 <= code < 500 for code in seen)
