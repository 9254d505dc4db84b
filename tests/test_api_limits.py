"""Documented, overridable caps: message size, messages per batch, body bytes and page size.

Every refusal names the limit it hit and leaves nothing behind.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.checks import run_checks
from rest_framework.test import APIClient

from motorhead_django import memory
from motorhead_django.models import ApiKey, ChatMessage, ChatSession

pytestmark = pytest.mark.django_db


@pytest.fixture
def user():
    return get_user_model().objects.create_user("lim")


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def key(user) -> str:
    return ApiKey.issue(user, "k")[1]


def compat_post(client, key: str, body, session_id: str = "s"):
    return client.post(
        f"/motorhead/sessions/{session_id}/memory",
        body if isinstance(body, str) else json.dumps(body),
        content_type="application/json",
        HTTP_X_METAL_API_KEY=key,
    )


def messages(count: int, content: str = "hi") -> list[dict[str, str]]:
    return [{"role": "Human", "content": content} for _ in range(count)]


def test_a_body_over_max_request_bytes_is_a_413_naming_the_limit(api, client, key, user, settings):
    settings.MOTORHEAD = {"MAX_REQUEST_BYTES": 500}
    big = {"messages": messages(1, "x" * 600)}
    refused = compat_post(client, key, big)
    assert refused.status_code == 413
    detail = refused.json()["detail"]
    assert "500 bytes" in detail and "MAX_REQUEST_BYTES" in detail
    session = memory.get_or_create_session("mine", owner=user)
    rest = api.post(f"/api/sessions/{session.pk}/messages/", big, format="json")
    assert rest.status_code == 413 and "500 bytes" in rest.json()["detail"]
    assert not ChatMessage.objects.exists() and not ChatSession.objects.exclude(pk=session.pk)
    assert compat_post(client, key, {"messages": messages(1, "x" * 300)}).status_code == 200


def test_max_request_bytes_defaults_to_djangos_limit(client, key, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 400
    refused = compat_post(client, key, {"messages": messages(1, "y" * 500)})
    assert refused.status_code == 413 and "400 bytes" in refused.json()["detail"]


def test_message_size_and_batch_size_are_400s_naming_the_setting(api, client, key, user, settings):
    settings.MOTORHEAD = {"MAX_CONTENT_LENGTH": 10, "MAX_MESSAGES_PER_REQUEST": 2}
    too_long = compat_post(client, key, {"messages": messages(1, "x" * 11)})
    assert too_long.status_code == 400
    assert "MAX_CONTENT_LENGTH" in json.dumps(too_long.json())
    too_many = compat_post(client, key, {"messages": messages(3)})
    assert too_many.status_code == 400
    assert "At most 2 messages" in json.dumps(too_many.json())
    assert "MAX_MESSAGES_PER_REQUEST" in json.dumps(too_many.json())
    session = memory.get_or_create_session("rest", owner=user)
    url = f"/api/sessions/{session.pk}/messages/"
    rest = api.post(url, {"messages": messages(1, "x" * 11)}, format="json")
    assert rest.status_code == 400 and "MAX_CONTENT_LENGTH" in json.dumps(rest.json())
    assert not ChatMessage.objects.exists()
    assert compat_post(client, key, {"messages": messages(2, "x" * 10)}).status_code == 200


def test_max_page_size_caps_every_list(api, client, key, user, settings):
    settings.MOTORHEAD = {"MAX_PAGE_SIZE": 3}
    for n in range(5):
        memory.get_or_create_session(f"s{n}", owner=user)
    listed = api.get("/api/sessions/").json()
    assert len(listed["results"]) == 3 and listed["count"] == 5
    refused = api.get("/api/sessions/", {"page_size": 4})
    assert refused.status_code == 400
    assert refused.json()["page_size"] == [
        "A whole number from 1 to 3. The limit is MOTORHEAD['MAX_PAGE_SIZE']."
    ]
    session = ChatSession.objects.get(session_id="s0")
    memory.append_messages(session, messages(5))
    page = api.get(f"/api/sessions/{session.pk}/messages/").json()
    assert len(page["results"]) == 3
    refused = api.get(f"/api/sessions/{session.pk}/messages/", {"page_size": 4})
    assert refused.status_code == 400 and "MAX_PAGE_SIZE" in refused.json()["page_size"][0]
    headers = {"HTTP_X_METAL_API_KEY": key}
    assert len(client.get("/motorhead/sessions", **headers).json()) == 3  # default 10, capped
    refused = client.get("/motorhead/sessions", {"size": 4}, **headers)
    assert refused.status_code == 400 and "MAX_PAGE_SIZE" in refused.json()["size"][0]


@pytest.mark.parametrize(
    "options",
    [
        {"MAX_PAGE_SIZE": 0},
        {"MAX_PAGE_SIZE": "50"},
        {"MAX_REQUEST_BYTES": 0},
        {"MAX_REQUEST_BYTES": 1.5},
    ],
)
def test_bad_limits_are_check_errors(settings, options):
    settings.MOTORHEAD = options
    ids = [m.id for m in run_checks() if m.id and m.id.startswith("motorhead_django")]
    assert ids == ["motorhead_django.E008"]


def test_redact_must_be_a_list_of_strings(settings):
    settings.MOTORHEAD = {"SECRETS": "secret"}
    ids = [m.id for m in run_checks() if m.id and m.id.startswith("motorhead_django")]
    assert ids == ["motorhead_django.E013"]
