"""Bad input is a clean refusal on every layer, and what is accepted reads back unchanged.

The core's rules (memory.validate_*) with property-based tests over arbitrary Unicode,
lone surrogates and NUL included; then one regression test per 500 or silently ignored
input of issue 14, through the REST and the Motorhead-compatible routes. Runs on SQLite
and, with DATABASE_URL, on PostgreSQL: a value PostgreSQL cannot hold would fail there.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import re
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from motorhead_django import memory
from motorhead_django.admin import ChatSessionForm
from motorhead_django.exceptions import MotorheadValidationError
from motorhead_django.models import ApiKey, ChatMessage, ChatSession

pytestmark = pytest.mark.django_db

# Every code point, lone surrogates (category Cs) and NUL included.
ANY_TEXT = st.text(st.characters(codec=None, blacklist_categories=()), max_size=40)
EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_ids = itertools.count()


def storable(text: str) -> bool:
    return "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.fixture
def ann():
    return get_user_model().objects.create(username="ann")


@pytest.fixture
def api(ann) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(ann)
    return client


@pytest.fixture
def compat(ann) -> APIClient:
    _, key = ApiKey.issue(ann, "tests")
    return APIClient(raise_request_exception=False, HTTP_X_METAL_API_KEY=key)


def post_json(client: APIClient, url: str, body: Any) -> Any:
    text = body if isinstance(body, str) else json.dumps(body)
    return client.post(url, text, content_type="application/json")


def assert_lists_still_work(api: APIClient, compat: APIClient) -> None:
    """No refused value was stored: every list renders (the poisoned-list bug of issue 14)."""
    assert api.get("/api/sessions/").status_code == 200
    assert compat.get("/motorhead/sessions").status_code == 200
    for session in ChatSession.objects.all():
        assert api.get(f"/api/sessions/{session.pk}/messages/").status_code in (200, 404)


# -- the core's rules, property-based --------------------------------------------------


@EXAMPLES
@given(content=ANY_TEXT, role=ANY_TEXT)
def test_append_reads_back_identical_or_refuses_cleanly(content, role):
    session = memory.get_or_create_session(f"prop-{next(_ids)}")
    valid = storable(content) and storable(role)
    valid = valid and 1 <= len(role) <= 255 and ": " not in role
    valid = valid and not any(ord(c) < 32 or ord(c) == 127 for c in role)
    try:
        memory.append_messages(session, [(role, content)], context=content)
    except MotorheadValidationError as exc:
        assert not valid, exc
        assert not session.messages.exists()
        return
    assert valid
    stored = ChatMessage.objects.get(session=session)
    assert (stored.role, stored.content) == (role, content)
    assert ChatSession.objects.get(pk=session.pk).context == content
    # Motorhead stores "role: content" and splits at the first ": ": it comes back whole.
    assert f"{role}: {content}".split(": ", 1) == [role, content]


@EXAMPLES
@given(session_id=ANY_TEXT, namespace=ANY_TEXT)
def test_session_ids_and_namespaces_read_back_or_refuse(session_id, namespace):
    def clean(text: str) -> bool:
        return storable(text) and not any(ord(c) < 32 or ord(c) == 127 for c in text)

    valid = (
        clean(session_id)
        and clean(namespace)
        and session_id.strip() != ""
        # The server id forms of owned and moved sessions are reserved without an owner.
        and not re.fullmatch(r"[un][0-9]+:.*", session_id, re.DOTALL)
    )
    # Examples share the test's transaction: a server id is held once across namespaces.
    ChatSession.objects.all().delete()
    try:
        session = memory.get_or_create_session(session_id, namespace=namespace)
    except MotorheadValidationError:
        assert not valid
        return
    assert valid
    stored = ChatSession.objects.get(pk=session.pk)
    assert (stored.session_id, stored.namespace) == (session_id, namespace)


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | ANY_TEXT
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(ANY_TEXT, children, max_size=3)
    ),
    max_leaves=12,
)


def json_storable(value: Any) -> bool:
    if isinstance(value, dict):
        return all(storable(k) and json_storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(json_storable(item) for item in value)
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return abs(value) < 2**63
    return math.isfinite(value) and abs(value) < 2**53


@EXAMPLES
@given(metadata=st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=4))
def test_metadata_reads_back_identical_or_refuses(metadata):
    try:
        memory.validate_metadata(metadata)
    except MotorheadValidationError as exc:
        assert not json_storable(metadata), exc
        return
    assert json_storable(metadata)
    session = memory.get_or_create_session(f"meta-{next(_ids)}")
    ChatSession.objects.filter(pk=session.pk).update(metadata=metadata)
    assert ChatSession.objects.get(pk=session.pk).metadata == metadata


def test_metadata_depth_is_bounded_without_recursion():
    nested: Any = "leaf"
    for _ in range(10_000):
        nested = {"a": nested}
    with pytest.raises(MotorheadValidationError, match="deeper than 32"):
        memory.validate_metadata(nested)
    ok: Any = 1
    for _ in range(memory.MAX_METADATA_DEPTH - 1):
        ok = [ok]
    assert memory.validate_metadata({"a": ok})


@pytest.mark.parametrize(
    "text, too_deep",
    [
        (deep(64), False),
        (deep(65), True),
        ('["' + "[" * 100 + '"]', False),  # brackets inside a string do not count
        ('["\\"' + "[" * 100 + '"]', False),  # nor after an escaped quote
        ('"' + "[" * 100, False),  # an unterminated string runs to the end
        ('{"a":' * 65 + "1" + "}" * 65, True),
    ],
)
def test_json_too_deep(text, too_deep):
    assert memory.json_too_deep(text) is too_deep


@pytest.mark.parametrize(
    "role", ["Human: x", "a\nb", "tab\there", "", "x" * 256, "\ud800", "nul\x00"]
)
def test_roles_that_would_not_survive_motorhead_are_refused(role):
    session = memory.get_or_create_session("roles")
    with pytest.raises(MotorheadValidationError) as raised:
        memory.append_messages(session, [(role, "c")])
    assert list(raised.value.errors) == ["messages[0].role"]


@pytest.mark.parametrize("role", ["Human", "AI", "tool:search", "a:", "ünïcode", "spaced role"])
def test_ordinary_roles_pass(role):
    assert memory.validate_role(role) == role
    assert f"{role}: x".split(": ", 1) == [role, "x"]


def test_allowed_roles_still_apply(settings):
    settings.MOTORHEAD = {"ALLOWED_ROLES": ["Human"]}
    assert memory.validate_role("Human") == "Human"
    with pytest.raises(MotorheadValidationError, match="Unknown role"):
        memory.validate_role("AI")


def test_context_and_python_api_refuse_unstorable_text():
    session = memory.get_or_create_session("ctx")
    for bad in ("\ud800", "a\x00b"):
        with pytest.raises(MotorheadValidationError) as raised:
            memory.set_context(session, bad)
        assert list(raised.value.errors) == ["context"]
        with pytest.raises(MotorheadValidationError):
            memory.append_messages(session, [("Human", "ok")], context=bad)
    with pytest.raises(MotorheadValidationError):
        memory.get_or_create_session("ns", namespace="a\nb")
    assert not session.messages.exists()


# -- issue 14, item 1/2: 500s -------------------------------------------------------------


def test_deep_json_is_a_400_on_every_json_route(api, compat, ann):
    session = memory.get_or_create_session("deep", owner=ann)
    body = '{"session_id": "x", "metadata": {"a": ' + deep(1000) + "}}"
    for method, url in [
        ("post", "/api/sessions/"),
        ("patch", f"/api/sessions/{session.pk}/"),
        ("put", f"/api/sessions/{session.pk}/"),
        ("post", f"/api/sessions/{session.pk}/messages/"),
        ("post", f"/api/sessions/{session.pk}/retrieval/"),
        ("post", f"/api/sessions/{session.pk}/sync/"),
    ]:
        response = getattr(api, method)(url, body, content_type="application/json")
        assert response.status_code == 400, (url, response.content)
        assert "deeper than 64" in response.json()["detail"]
    for url in ("/motorhead/sessions/deep/memory", "/motorhead/sessions/deep/retrieval"):
        response = compat.post(url, deep(5000), content_type="application/json")
        assert response.status_code == 400, (url, response.content)


def test_deep_metadata_in_a_form_field_is_a_400(api):
    response = api.post("/api/sessions/", {"session_id": "f", "metadata": deep(5000)})
    assert response.status_code == 400
    assert "deeper than 64" in response.json()["metadata"][0]
    assert not ChatSession.objects.exists()


def test_the_parser_bounds_a_body_whatever_its_content_length_says(api, settings):
    from io import BytesIO

    from motorhead_django.api.errors import RequestTooLarge
    from motorhead_django.api.parsers import MotorheadJSONParser

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    # A stream longer than its header claims (or without one) is cut at the limit.
    with pytest.raises(RequestTooLarge):
        MotorheadJSONParser().parse(BytesIO(b'{"a": "' + b"x" * 200 + b'"}'))
    assert MotorheadJSONParser().parse(BytesIO(b'{"a": 1}')) == {"a": 1}
    body = json.dumps({"session_id": "x" * 200})
    assert api.post("/api/sessions/", body, content_type="application/json").status_code == 413


def test_nan_and_oversized_numbers_are_400s(api, compat):
    assert (
        post_json(api, "/api/sessions/", '{"session_id": "n", "metadata": {"a": NaN}}').status_code
        == 400
    )
    big = '{"session_id": "n", "metadata": {"a": ' + "9" * 5000 + "}}"
    assert post_json(api, "/api/sessions/", big).status_code == 400
    big = '{"messages": [{"role": "Human", "content": "x"}], "context": ' + "9" * 5000 + "}"
    assert post_json(compat, "/motorhead/sessions/n/memory", big).status_code == 400


@pytest.mark.parametrize("ordering", ["--created_at", "-", "created_at,pk", "-pk", "owner"])
def test_bad_ordering_is_a_400_listing_the_choices(api, ordering):
    response = api.get("/api/sessions/", {"ordering": ordering})
    assert response.status_code == 400
    assert "-last_activity" in response.json()["ordering"][0]


@pytest.mark.parametrize("raw", ["p=abc", "p=1.5", "p=-1", "o=-5", "r=x", "p=" + "9" * 30])
def test_crafted_cursors_are_400s(api, ann, raw):
    session = memory.get_or_create_session("cur", owner=ann)
    memory.append_messages(session, [("Human", "x")])
    cursor = base64.b64encode(raw.encode()).decode()
    response = api.get(f"/api/sessions/{session.pk}/messages/", {"cursor": cursor})
    assert response.status_code == 400, response.content
    assert response.json() == {"cursor": ["Invalid cursor."]}


def test_a_real_cursor_still_pages(api, ann):
    session = memory.get_or_create_session("pages", owner=ann)
    memory.append_messages(session, [("Human", f"m{n}") for n in range(5)])
    first = api.get(f"/api/sessions/{session.pk}/messages/", {"page_size": 2}).json()
    second = api.get(first["next"]).json()
    assert [m["content"] for m in second["results"]] == ["m2", "m3"]


@pytest.mark.parametrize(
    "params",
    [
        {"page_size": "abc"},
        {"page_size": "0"},
        {"page_size": "9999"},
        {"page": "abc"},
        {"page": "0"},
    ],
)
def test_bad_page_parameters_are_400s(api, ann, params):
    session = memory.get_or_create_session("pp", owner=ann)
    assert api.get("/api/sessions/", params).status_code == 400
    if "page_size" in params:
        assert api.get(f"/api/sessions/{session.pk}/messages/", params).status_code == 400


@pytest.mark.parametrize(
    "key", ["mhd_ab\x00cdefg_xyz", "mhd_\x00\x00\x00\x00\x00\x00\x00\x00_x", "mhd_ABCDEFGH_x"]
)
def test_a_malformed_api_key_is_a_401(key):
    client = APIClient(raise_request_exception=False)
    assert client.get("/motorhead/sessions", HTTP_X_METAL_API_KEY=key).status_code == 401
    assert ApiKey.find(key) is None


def test_a_nul_in_the_url_key_is_a_401():
    client = APIClient(raise_request_exception=False)
    assert client.get("/motorhead/k/mhd_ab%00cdefg_x/sessions").status_code == 401


def test_the_browsable_api_renders_the_messages_resource(api, ann):
    session = memory.get_or_create_session("html", owner=ann)
    memory.append_messages(session, [("Human", "hello")])
    url = f"/api/sessions/{session.pk}/messages/"
    response = api.get(url, HTTP_ACCEPT="text/html")
    assert response.status_code == 200 and b"hello" in response.content
    assert api.options(url).status_code == 200
    assert (
        api.get(f"/api/sessions/{session.pk + 1}/messages/", HTTP_ACCEPT="text/html").status_code
        == 404
    )


# -- issue 14, items 2/3: unstorable text, on every layer ----------------------------------

SURROGATE = '"\\ud800"'  # a lone surrogate, as JSON escapes it


def test_unstorable_text_is_refused_by_rest_and_nothing_poisons_a_list(api, compat, ann):
    session = memory.get_or_create_session("poison", owner=ann)
    bodies = [
        (
            "post",
            "/api/sessions/",
            '{"session_id": "a", "metadata": {"k": @}}'.replace("@", SURROGATE),
        ),
        (
            "post",
            "/api/sessions/",
            '{"session_id": "a", "metadata": {@: 1}}'.replace("@", SURROGATE),
        ),
        ("post", "/api/sessions/", '{"session_id": "a", "metadata": {"k": "\\u0000"}}'),
        ("post", "/api/sessions/", '{"session_id": @}'.replace("@", SURROGATE)),
        ("post", "/api/sessions/", '{"session_id": "a", "namespace": @}'.replace("@", SURROGATE)),
        ("post", "/api/sessions/", '{"session_id": "a", "context": @}'.replace("@", SURROGATE)),
        (
            "patch",
            f"/api/sessions/{session.pk}/",
            '{"metadata": {"k": [@]}}'.replace("@", SURROGATE),
        ),
        ("patch", f"/api/sessions/{session.pk}/", '{"context": @}'.replace("@", SURROGATE)),
        (
            "post",
            f"/api/sessions/{session.pk}/messages/",
            '{"role": "Human", "content": @}'.replace("@", SURROGATE),
        ),
        (
            "post",
            f"/api/sessions/{session.pk}/messages/",
            '{"role": @, "content": "x"}'.replace("@", SURROGATE),
        ),
        ("post", f"/api/sessions/{session.pk}/retrieval/", '{"text": @}'.replace("@", SURROGATE)),
        ("post", f"/api/sessions/{session.pk}/sync/", '{"action": @}'.replace("@", SURROGATE)),
    ]
    for method, url, body in bodies:
        response = getattr(api, method)(url, body, content_type="application/json")
        assert response.status_code == 400, (url, body, response.content)
    for url, body in [
        (
            "/motorhead/sessions/c/memory",
            '{"messages": [{"role": "Human", "content": @}]}'.replace("@", SURROGATE),
        ),
        (
            "/motorhead/sessions/c/memory",
            '{"messages": [{"role": @, "content": "x"}]}'.replace("@", SURROGATE),
        ),
        (
            "/motorhead/sessions/c/memory",
            '{"messages": [{"role": "H", "content": "x"}], "context": @}'.replace("@", SURROGATE),
        ),
        ("/motorhead/sessions/c/retrieval", '{"text": @}'.replace("@", SURROGATE)),
    ]:
        response = compat.post(url, body, content_type="application/json")
        assert response.status_code == 400, (url, body, response.content)
    assert not ChatSession.objects.filter(session_id="c").exists()
    assert ChatSession.objects.get(pk=session.pk).metadata == {}
    assert not session.messages.exists()
    assert_lists_still_work(api, compat)


def test_an_error_quoting_a_surrogate_still_renders(api, ann):
    session = memory.get_or_create_session("quote", owner=ann)
    response = post_json(
        api, f"/api/sessions/{session.pk}/sync/", '{"action": @}'.replace("@", SURROGATE)
    )
    assert response.status_code == 400 and "\\ud800" in response.json()["action"][0]


@pytest.mark.parametrize("role", ["Human: x", "a\nb"])
def test_roles_that_split_differently_are_400s(api, compat, ann, role):
    session = memory.get_or_create_session("split", owner=ann)
    response = post_json(
        api, f"/api/sessions/{session.pk}/messages/", {"role": role, "content": "y"}
    )
    assert response.status_code == 400 and "messages[0].role" in response.json()
    body = {"messages": [{"role": "Human", "content": "ok"}, {"role": role, "content": "y"}]}
    response = post_json(compat, "/motorhead/sessions/split2/memory", body)
    assert response.status_code == 400 and "messages[1].role" in response.json()
    assert not ChatMessage.objects.exists()


def test_admin_form_applies_the_core_rules():
    base = {
        "session_id": "adm",
        "namespace": "",
        "metadata": "{}",
        "context": "",
        "add_role": "Human",
        "add_content": "",
    }
    for field, value in [
        ("namespace", "a\tb"),
        ("metadata", '{"a": "\\ud800"}'),
        ("metadata", deep(5000)),
        ("context", "\x00"),
    ]:
        form = ChatSessionForm(data={**base, field: value})
        assert not form.is_valid() and field in form.errors, (field, form.errors)
    form = ChatSessionForm(data={**base, "add_role": "Human: x", "add_content": "y"})
    assert not form.is_valid()
    assert ChatSessionForm(data=base).is_valid()


def test_langchain_adapter_refuses_a_role_motorhead_would_split():
    from langchain_core.messages import ChatMessage as RoleMessage

    from motorhead_django.langchain import DjangoChatMessageHistory

    history = DjangoChatMessageHistory("lc")
    with pytest.raises(MotorheadValidationError):
        history.add_messages([RoleMessage(content="x", role="tool: y")])
    with pytest.raises(MotorheadValidationError):
        DjangoChatMessageHistory("bad\x00id")
    with pytest.raises(MotorheadValidationError):
        DjangoChatMessageHistory("ok", namespace="a\nb")
    assert history.messages == []


# -- issue 14, item 4: silently ignored input ----------------------------------------------


def test_rest_write_bodies_refuse_unknown_and_read_only_fields(api, ann):
    response = post_json(
        api, "/api/sessions/", {"session_id": "u", "sync_state": "synced", "bogus": 1}
    )
    assert response.status_code == 400
    assert response.json()["sync_state"] == ["This field is read-only."]
    assert response.json()["bogus"][0].startswith("Unknown field")
    assert not ChatSession.objects.exists()
    session = memory.get_or_create_session("u", owner=ann)
    for method, url, body, named in [
        ("patch", f"/api/sessions/{session.pk}/", {"session_id": "v"}, "session_id"),
        ("put", f"/api/sessions/{session.pk}/", {"context": "c", "tokens": 5}, "tokens"),
        (
            "post",
            f"/api/sessions/{session.pk}/messages/",
            {"role": "H", "content": "x", "bogus": 1},
            "bogus",
        ),
        ("post", f"/api/sessions/{session.pk}/retrieval/", {"text": "x", "limit": 3}, "limit"),
        ("post", f"/api/sessions/{session.pk}/sync/", {"action": "push", "force": True}, "force"),
    ]:
        response = getattr(api, method)(url, json.dumps(body), content_type="application/json")
        assert response.status_code == 400, (url, response.content)
        assert named in response.json(), response.json()
    batch = {"messages": [{"role": "H", "content": "x", "name": "n"}]}
    response = post_json(api, f"/api/sessions/{session.pk}/messages/", batch)
    assert response.status_code == 400 and "name" in response.json()["messages"]["0"]
    session.refresh_from_db()
    assert session.context is None and not session.messages.exists()


def test_compatible_routes_ignore_unknown_fields_like_motorhead(compat):
    body = {"messages": [{"role": "Human", "content": "x", "name": "n"}], "extra": 1}
    assert post_json(compat, "/motorhead/sessions/lenient/memory", body).status_code == 200
    response = post_json(compat, "/motorhead/sessions/lenient/retrieval", {"text": "x", "k": 2})
    assert response.status_code == 200


def test_filters_are_checked_against_their_choices(api):
    response = api.get("/api/sessions/", {"sync_state": "bogus"})
    assert response.status_code == 400
    assert "pending" in response.json()["sync_state"][0]
    assert api.get("/api/sessions/", {"sync_state": "pending"}).status_code == 200


def test_motorhead_apikey_refuses_what_cannot_be_stored(ann):
    for options in (
        {"owner": "ann", "namespace": "team\x07"},
        {"owner": "ann", "namespace": "a\nb"},
        {"owner": "ann", "namespace": "\ud800"},
        {"owner": "ann\x00"},
        {"owner": "ann", "name": "n\x00"},
        {"revoke": "ab\x00cdefg"},
    ):
        with pytest.raises(CommandError):
            call_command("motorhead_apikey", stdout=StringIO(), **options)
    assert not ApiKey.objects.exists()
    call_command("motorhead_apikey", owner="ann", namespace="team", stdout=StringIO())
    assert ApiKey.objects.get().namespace == "team"


def test_motorhead_import_refuses_a_namespace_with_control_characters(settings):
    settings.MOTORHEAD = {"URL": "http://127.0.0.1:9"}  # never reached: refused first
    with pytest.raises(CommandError, match="control characters"):
        call_command("motorhead_import", "--namespace", "a\x00b", stdout=StringIO())


def test_retrieval_through_the_python_api_refuses_unstorable_text():
    session = memory.get_or_create_session("find")
    memory.append_messages(session, [("Human", "hello")])
    for bad in ("\ud800", "a\x00"):
        with pytest.raises(MotorheadValidationError):
            memory.retrieve(session, bad)
    assert memory.retrieve(session, "hello")[0]["content"] == "hello"


@pytest.mark.parametrize("query", ["q=a%00b", "sync_state__exact=%00", "namespace=%00"])
@pytest.mark.parametrize("model", ["chatsession", "apikey"])
def test_admin_changelists_refuse_nul_in_parameters(client, model, query):
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    response = client.get(f"/admin/motorhead_django/{model}/?{query}")
    assert response.status_code == 302 and response["Location"].endswith("?e=1")
    assert client.get(f"/admin/motorhead_django/{model}/?q=ok").status_code == 200


@pytest.mark.parametrize(
    "motorhead",
    [{"NAMESPACE": "team\n"}, {"NAMESPACE": "\ud800"}, {"ALLOWED_ROLES": ["Human", "AI: x"]}],
)
def test_settings_the_core_would_refuse_are_system_check_errors(settings, motorhead):
    from motorhead_django.checks import check_text_options

    settings.MOTORHEAD = motorhead
    assert [m.id for m in check_text_options()] == ["motorhead_django.E009"]
    settings.MOTORHEAD = {"NAMESPACE": "team", "ALLOWED_ROLES": ["Human", "tool:x"]}
    assert check_text_options() == []


@pytest.mark.parametrize("cursor", ["zzz", "%%%", "\u00e9t\u00e9", "cD0x" * 500])
def test_unreadable_cursors_are_400s_not_404s(api, ann, cursor):
    session = memory.get_or_create_session("raw", owner=ann)
    response = api.get(f"/api/sessions/{session.pk}/messages/", {"cursor": cursor})
    assert response.status_code == 400, response.content
    assert response.json() == {"cursor": ["Invalid cursor."]}


def test_the_api_key_admin_form_refuses_a_namespace_with_control_characters(ann):
    from motorhead_django.admin import ApiKeyForm

    form = ApiKeyForm(data={"name": "k", "owner": ann.pk, "namespace": "te\x07am"})
    assert not form.is_valid() and "namespace" in form.errors
    assert ApiKeyForm(data={"name": "k", "owner": ann.pk, "namespace": "team"}).is_valid()
    assert ApiKeyForm(data={"name": "k", "owner": ann.pk, "namespace": ""}).is_valid()


@pytest.mark.parametrize("session_id", ["   ", " ", "\u00a0\u2003", "\u3000"])
def test_a_session_id_of_only_whitespace_is_refused(api, compat, session_id):
    with pytest.raises(MotorheadValidationError) as refused:
        memory.create_session(session_id)
    assert refused.value.errors["session_id"] == "A session id cannot be only whitespace."
    response = post_json(api, "/api/sessions/", {"session_id": session_id})
    assert response.status_code == 400 and "session_id" in response.json()
    assert not ChatSession.objects.exists()
    # Whitespace around other characters is part of the id.
    assert memory.create_session(" a ").session_id == " a "
