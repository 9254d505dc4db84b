"""Schemathesis against the served OpenAPI schema: no 5xx, no response the schema does not allow.

Every operation of both surfaces (``/api/`` and ``/motorhead/``) in the example project's
schema gets schema-valid and schema-invalid requests, in-process through the WSGI app, on
pytest-django's test database, authenticated as a REST user (token) who also owns an API
key. The run is derandomized, so it is the same on every machine. Run it alone with
``.venv/bin/python -m pytest tests/test_api_fuzz.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
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

pytestmark = [pytest.mark.django_db, pytest.mark.urls(URLS)]

# Loaded at collection, so each operation is its own test; the schema view needs no database.
with override_settings(ROOT_URLCONF=URLS):
    SCHEMA = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


def test_every_route_is_fuzzed():
    assert len(OPERATIONS) == 18


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
