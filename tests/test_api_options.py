"""OPTIONS on every REST and compatible route: never a 5xx, never another user's data."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from motorhead_django import memory
from motorhead_django.models import ApiKey

pytestmark = pytest.mark.django_db

SECRET = "bobs-private-words"


def _routes(patterns, prefix: str = ""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern)


def _fill(route: str, values: dict[str, str]) -> str:
    route = route.replace("^", "").replace("\\Z", "").replace("$", "")
    route = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], route)
    route = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: values[m.group(1)], route)
    return "/" + route.replace("[\\s\\S]*", "nothing-here")


def motorhead_routes() -> list[str]:
    return sorted(
        r for r in _routes(get_resolver().url_patterns) if r.startswith(("api/", "motorhead/"))
    )


def test_every_route_is_found():
    routes = motorhead_routes()
    assert "api/sessions/<str:pk>/" in routes
    assert any("k/(?P<api_key>" in r and "memory" in r for r in routes)
    assert len(routes) >= 16


def test_options_on_every_route_is_never_a_5xx_nor_leaks(settings):
    settings.MOTORHEAD = {"COMPAT_ALLOW_ANONYMOUS": True}
    users = get_user_model().objects
    alice, bob = users.create_user("alice"), users.create_user("bob")
    mine = memory.create_session("mine", owner=alice)
    theirs = memory.create_session("theirs", owner=bob, context=SECRET, metadata={"note": SECRET})
    memory.append_messages(theirs, [("Human", SECRET)])
    _, raw = ApiKey.issue(owner=alice, name="k")

    rest = APIClient(raise_request_exception=False)
    rest.force_authenticate(alice)
    keyed = APIClient(raise_request_exception=False)
    anonymous = APIClient(raise_request_exception=False)
    checked = 0
    for route in motorhead_routes():
        for pk, session_id in ((mine.pk, "mine"), (theirs.pk, theirs.session_id)):
            url = _fill(
                route, {"pk": str(pk), "session_id": session_id, "api_key": raw, "path": "x"}
            )
            if url.startswith("/api/"):
                answers = [rest.options(url), APIClient(raise_request_exception=False).options(url)]
            else:
                answers = [keyed.options(url, HTTP_X_METAL_API_KEY=raw), anonymous.options(url)]
            for answer in answers:
                checked += 1
                assert answer.status_code < 500, (url, answer.status_code, answer.content[:300])
                assert SECRET not in answer.content.decode(), (url, answer.content[:300])
    assert checked >= 64


def test_options_on_a_session_detail_describes_it_for_its_owner_only():
    users = get_user_model().objects
    alice, bob = users.create_user("alice"), users.create_user("bob")
    session = memory.create_session("s1", owner=alice)
    api = APIClient()
    api.force_authenticate(alice)
    answer = api.options(f"/api/sessions/{session.pk}/")
    assert answer.status_code == 200
    assert "PUT" in answer.json().get("actions", {})  # the owner may change it
    api.force_authenticate(bob)
    answer = api.options(f"/api/sessions/{session.pk}/")
    assert answer.status_code < 500
    assert "actions" not in answer.json()  # bob may not change it: no form offered
