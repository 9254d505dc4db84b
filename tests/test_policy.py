"""The authorization matrix of the REST and compatible routes, built from their URL conf.

Every route and method of ``rest_urlpatterns`` and ``compat_urlpatterns`` (keyed
variants included) is tried by every kind of caller against a session someone
else owns; the test asserts the *effect*: the session's row and messages are
unchanged and nothing of it is readable, unless the policy grants the action. A
route added to the URL conf is tried automatically (and fails here until the
table below says what body to send it).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import URLPattern, URLResolver, reverse
from rest_framework.test import APIClient

from motorhead_django import memory, policy
from motorhead_django.models import ApiKey, ChatMessage, ChatSession
from motorhead_django.urls import compat_urlpatterns, rest_urlpatterns

pytestmark = pytest.mark.django_db

SECRET = "the-owners-secret-words"
TARGET = "target-chat"
ACTORS = (
    "anonymous",
    "other",
    "owner",
    "staff",
    "staff_view",
    "staff_change",
    "staff_delete",
    "superuser",
)
# What each actor holds on *everyone's* sessions (the owner holds all on their own).
GRANTS = {
    "staff_view": {policy.VIEW},
    "staff_change": {policy.VIEW, policy.CHANGE},
    "staff_delete": {policy.DELETE},
    "superuser": set(policy.ACTIONS),
}
# The body each (view, method) is sent: a new route fails until it has one here.
BODIES: dict[tuple[str, str], Any] = {
    ("rest.SessionListView", "get"): None,
    ("rest.SessionListView", "post"): {"session_id": TARGET, "metadata": {"by": "actor"}},
    ("rest.SessionDetailView", "get"): None,
    ("rest.SessionDetailView", "patch"): {"metadata": {"hacked": True}},
    ("rest.SessionDetailView", "put"): {"metadata": {"hacked": True}},
    ("rest.SessionDetailView", "delete"): None,
    ("rest.MessageListView", "get"): None,
    ("rest.MessageListView", "post"): {"role": "Human", "content": "intrusion"},
    ("rest.MemoryView", "get"): None,
    ("rest.RetrievalView", "post"): {"text": SECRET},
    ("rest.SearchView", "post"): {"text": SECRET},
    ("rest.ApiRootView", "get"): None,
    ("rest.SyncView", "get"): None,
    ("rest.SyncView", "post"): {"action": "push"},
    ("export.SessionExportView", "get"): None,
    ("export.UserExportView", "get"): None,
    ("compat.HealthView", "get"): None,
    ("compat.SessionListView", "get"): None,
    ("compat.MemoryView", "get"): None,
    ("compat.MemoryView", "post"): {"messages": [{"role": "Human", "content": "intrusion"}]},
    ("compat.MemoryView", "delete"): None,
    ("compat.RetrievalView", "post"): {"text": SECRET},
    ("compat.not_found", "get"): None,
}


def _routes(patterns: list[Any], namespace: str, prefix: str = "") -> list[tuple[str, Any, str]]:
    """``(url name, view, method)`` for every route under ``patterns``."""
    found = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}:{entry.namespace}" if entry.namespace else namespace
            found += _routes(entry.url_patterns, inner, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            view = getattr(entry.callback, "view_class", entry.callback)
            if isinstance(view, type):
                methods = [
                    m
                    for m in view.http_method_names
                    if m not in ("head", "options") and hasattr(view, m)
                ]
            else:
                methods = ["get"]
            name = f"{namespace}:{entry.name}" if entry.name else ""
            found += [(name, view, method) for method in methods]
    return found


REST_ROUTES = _routes(rest_urlpatterns, "motorhead-rest")
COMPAT_ROUTES = _routes(compat_urlpatterns, "motorhead-compat")


def _label(view: Any) -> str:
    return f"{view.__module__.rsplit('.', 1)[-1]}.{view.__name__}"


def _id(route: tuple[str, Any, str]) -> str:
    return f"{route[2].upper()} {route[0] or _label(route[1])}"


def test_the_matrix_covers_every_route():
    labels = {(_label(view), method) for _, view, method in REST_ROUTES + COMPAT_ROUTES}
    assert labels == set(BODIES), "a route without a row in BODIES (or a row without a route)"
    assert any(name.startswith("motorhead-compat:keyed:") for name, _, _ in COMPAT_ROUTES)


# -- the people ----------------------------------------------------------------------


def make_actor(kind: str) -> Any:
    if kind == "anonymous":
        return None
    users = get_user_model().objects
    user = users.create_user(
        kind,
        is_staff=kind.startswith("staff") or kind == "superuser",
        is_superuser=kind == "superuser",
    )
    if kind.startswith("staff_"):
        action = kind.removeprefix("staff_")
        user.user_permissions.add(Permission.objects.get(codename=f"{action}_chatsession"))
    return users.get(pk=user.pk)  # a fresh permission cache


@pytest.fixture
def world(upstream):
    """A session of ``owner`` with a secret message, the owner, and the server's view of it."""
    owner = get_user_model().objects.create_user("owner")
    session = memory.create_session(TARGET, owner=owner, metadata={"mine": True})
    memory.append_messages(session, [("Human", SECRET)])
    return owner, session


def snapshot(session: ChatSession) -> Any:
    row = ChatSession.objects.filter(pk=session.pk).values().first()
    messages = list(
        ChatMessage.objects.filter(session_id=session.pk).values_list("sequence", "role", "content")
    )
    return row, messages


def _actor_user(kind: str, owner: Any) -> Any:
    return owner if kind == "owner" else make_actor(kind)


# -- REST ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ACTORS)
@pytest.mark.parametrize("route", REST_ROUTES, ids=_id)
def test_rest_route(route, kind, world):
    name, view, method = route
    owner, session = world
    user = _actor_user(kind, owner)
    api = APIClient()
    if user is not None:
        api.force_authenticate(user)
    kwargs = {"pk": session.pk} if "<str:pk>" in _pattern_of(name) else {}
    url = reverse(name, kwargs=kwargs)
    body = BODIES[(_label(view), method)]
    before = snapshot(session)
    response = getattr(api, method)(url, body, format="json") if body else getattr(api, method)(url)
    streamed = getattr(response, "streaming", False)  # an export
    text = (b"".join(response.streaming_content) if streamed else response.content).decode()

    if view.__name__ == "UserExportView":  # the caller's own data, whatever they hold
        if user is None:
            assert response.status_code in (401, 403)
        else:
            assert response.status_code == 200
            assert (SECRET in text) == (kind == "owner"), text
        assert snapshot(session) == before
        return
    if view.__name__ == "SessionListView":
        visible = kind == "owner" or policy.VIEW in GRANTS.get(kind, set())
        if user is None:
            assert response.status_code in (401, 403)
        elif method == "get":
            assert response.status_code == 200
            assert (SECRET in text or TARGET in text) == visible, text
        else:  # a new session of the caller's own, with the same id: tenancy
            expected = 409 if kind == "owner" else 201
            assert response.status_code == expected, text
            if expected == 201:
                mine = ChatSession.objects.get(owner=user, session_id=TARGET)
                assert mine.pk != session.pk and mine.metadata == {"by": "actor"}
        assert snapshot(session) == before  # the owner's session untouched in every case
        return

    if view.__name__ == "ApiRootView":
        # Links only, for anyone: no session, no id, nothing changed.
        assert response.status_code == 200, text
        assert SECRET not in text and TARGET not in text and snapshot(session) == before
        return

    if view.__name__ == "SearchView":
        # Not configured here (no EMBEDDINGS): refused alike for all, and nothing shown.
        # Its scope is the policy's visible_to, tested with embeddings in test_embeddings.
        assert response.status_code in ((401, 403) if user is None else (400,)), text
        assert SECRET not in text and snapshot(session) == before
        return

    action = view.actions.get(method.upper()) or policy.METHOD_ACTIONS[method.upper()]
    allowed = kind == "owner" or action in GRANTS.get(kind, set())
    if not allowed:
        assert response.status_code in (401, 403, 404), (response.status_code, text)
        assert SECRET not in text and TARGET not in text
        assert snapshot(session) == before
        if response.status_code == 403 and user is not None:
            # Only someone who may read it learns it exists.
            assert policy.allows(user, policy.VIEW, session)
        return
    assert 200 <= response.status_code < 300, (response.status_code, text)
    after = snapshot(session)
    if method == "delete":
        assert after[0] is None or after[0]["sync_state"] == "deleting"
    elif (name, method) in {
        ("motorhead-rest:session-detail", "patch"),
        ("motorhead-rest:session-detail", "put"),
    }:
        assert after[0]["metadata"] == {"hacked": True}
    elif name == "motorhead-rest:session-messages" and method == "post":
        assert after[1][-1][2] == "intrusion"
    elif (
        method == "get" or name == "motorhead-rest:session-retrieval"
    ) and name != "motorhead-rest:session-sync":
        assert SECRET in text or TARGET in text


def _pattern_of(name: str) -> str:
    short = name.split(":")[-1]
    return next(str(p.pattern) for p in rest_urlpatterns if p.name == short)


# -- compatible routes -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ACTORS)
@pytest.mark.parametrize("route", COMPAT_ROUTES, ids=_id)
def test_compat_route(route, kind, world, settings):
    """Through the compatible routes only the owner's key reaches the session, whatever
    permissions the key's owner holds: ids there are scoped per owner."""
    name, view, method = route
    owner, session = world
    user = _actor_user(kind, owner)
    raw = None if user is None else ApiKey.issue(user, "matrix")[1]
    keyed = name.startswith("motorhead-compat:keyed:")
    if name:
        kwargs: dict[str, str] = {}
        groups = _compat_groups(name)
        if "session_id" in groups:
            kwargs["session_id"] = TARGET
        if "api_key" in groups:
            kwargs["api_key"] = raw or "mhd_00000000_not-a-key"  # anonymous: a made-up key
        url = reverse(name, kwargs=kwargs)
    else:
        url = f"/motorhead/sessions/{TARGET}/elsewhere"
    headers = {"HTTP_X_METAL_API_KEY": raw} if raw and not keyed else {}
    body = BODIES[(_label(view), method)]
    before = snapshot(session)
    client = Client()
    if body is None:
        response = getattr(client, method)(url, **headers)
    else:
        response = getattr(client, method)(
            url, json.dumps(body), content_type="application/json", **headers
        )
    text = response.content.decode()
    if kind != "owner":
        assert SECRET not in text and f'"{TARGET}"' not in text, text
        assert snapshot(session) == before
        if user is None and view.__name__ not in ("HealthView", "not_found"):
            assert response.status_code == 401
        if method == "post" and view.__name__ == "MemoryView" and user is not None:
            # The same id for another owner is that owner's own new session.
            assert ChatSession.objects.get(owner=user, session_id=TARGET).pk != session.pk
        return
    if view.__name__ == "not_found":
        assert response.status_code == 404 and snapshot(session) == before
    elif view.__name__ == "MemoryView" and method == "delete":
        after = snapshot(session)
        assert after[0] is None or after[0]["sync_state"] == "deleting"
    elif view.__name__ == "MemoryView" and method == "post":
        assert snapshot(session)[1][-1][2] == "intrusion"
    elif view.__name__ in ("MemoryView", "RetrievalView"):
        assert SECRET in text
    elif view.__name__ == "SessionListView":
        assert json.loads(text) == [TARGET]


def _compat_groups(name: str) -> set[str]:
    parts = name.split(":")
    keyed = len(parts) == 3
    patterns = compat_urlpatterns
    groups: set[str] = set()
    if keyed:
        resolver = next(p for p in patterns if isinstance(p, URLResolver))
        groups |= set(resolver.pattern.regex.groupindex)
        patterns = resolver.url_patterns
    pattern = next(p for p in patterns if isinstance(p, URLPattern) and p.name == parts[-1])
    regex = pattern.pattern.regex
    return groups | set(regex.groupindex) | set(getattr(pattern.pattern, "converters", {}))
