"""No key, ours or the upstream's, in any stored error, response or log record, in any encoding.

The upstream side runs against the real test server in its ``echo`` fault mode, which
answers with the request's key headers raw, JSON-escaped, URL-encoded, HTML-escaped and
in base64; our side drives the compatible routes' keyed URLs to 4xx and 5xx answers.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from urllib.parse import quote, quote_plus

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import mail
from hypothesis import assume, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from rest_framework.test import APIClient

from motorhead_django import engine, memory, redaction
from motorhead_django.client import MotorheadClient
from motorhead_django.exceptions import MotorheadServerError
from motorhead_django.models import ApiKey

pytestmark = pytest.mark.django_db

# Characters that every encoding changes: / + & = ? " < > % and a space.
UPSTREAM_KEY = 'sk-up/st+re&am="key"<>%20 tail-1f3a9c'
CLIENT_ID = "client/id+7&x"


def forms(secret: str, aligned: bool = True) -> set[str]:
    """Every form a server could echo ``secret`` in, computed independently of redaction.py
    (``aligned``: with its base64 inside longer base64 text at every alignment)."""
    raw = secret.encode()
    found = {
        secret,
        json.dumps(secret)[1:-1],
        quote(secret, safe=""),
        quote(secret, safe="").lower(),
        quote(secret),
        quote_plus(secret),
        html.escape(secret),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }
    # Inside longer base64 text ("id:key" of a Basic header), at each alignment: the
    # middle of the encoding, which only the secret's bytes decide.
    for pad in (b"", b"a", b"ab") if aligned else ():
        encoded = base64.b64encode(pad + raw).decode()
        found.add(encoded[len(pad) * 2 : len(encoded) - 4])
    return {form for form in found if len(form) >= 8}


def assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        for form in forms(secret):
            assert form.lower() not in text.lower(), (form, text)


def everything_logged(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(name)s %(message)s")
    parts = []
    for record in records:
        parts.append(formatter.format(record))
        request = getattr(record, "request", None)
        if request is not None and hasattr(request, "META"):
            parts.append(repr(request.path) + repr(request.get_full_path()) + repr(request.META))
    return "\n".join(parts)


# -- the functions ------------------------------------------------------------------


def test_redact_removes_every_encoding_of_a_configured_secret(settings):
    settings.MOTORHEAD = {"API_KEY": UPSTREAM_KEY, "CLIENT_ID": CLIENT_ID}
    basic = base64.b64encode(f"{CLIENT_ID}:{UPSTREAM_KEY}".encode()).decode()
    pads = ("", "a", "ab")
    inside = [base64.b64encode(f"{pad}{UPSTREAM_KEY}~".encode()).decode() for pad in pads]
    plain = {*forms(UPSTREAM_KEY, aligned=False), *forms(CLIENT_ID, aligned=False)}
    text = " | ".join([*sorted(plain), *inside, f"Basic {basic}"])
    clean = redaction.redact(text)
    assert_clean(clean, UPSTREAM_KEY, CLIENT_ID)
    assert basic[4:-4] not in clean
    assert clean.count(redaction.REDACTED) >= len(forms(UPSTREAM_KEY))


@pytest.mark.parametrize("before", ["", "x", "xy", "xyz", "Authorization: Basic "])
def test_base64_of_a_secret_is_found_inside_longer_base64_at_any_alignment(before, settings):
    settings.MOTORHEAD = {"SECRETS": [UPSTREAM_KEY]}
    encoded = base64.b64encode((before + UPSTREAM_KEY + "!trailing").encode()).decode()
    clean = redaction.redact(encoded)
    assert redaction.REDACTED in clean
    # What is left is at most the few characters shared with the neighbouring bytes.
    left = len(clean.replace(redaction.REDACTED, ""))
    assert left <= len(encoded) - 4 * len(UPSTREAM_KEY) // 3 + 4


# Any text a secret could be: every code point but lone surrogates, at least 8 of them.
SECRETS = st.text(st.characters(codec="utf-8"), min_size=8, max_size=40)
AROUND = st.text(st.characters(codec="utf-8"), max_size=5)


@examples(max_examples=150, deadline=None, database=None)
@given(secret=SECRETS, before=AROUND, after=AROUND)
def test_any_secret_in_any_form_anywhere_is_redacted(secret, before, after):
    # A secret the marker itself spells ("[redacte", "acted]xx") is still in the clean text.
    assume("[" not in secret and "]" not in secret and "redacted" not in secret)
    raw, pad = secret.encode(), before.encode()
    echoes = [before + form + after for form in forms(secret, aligned=False)]
    echoes.append(base64.b64encode(pad + raw + after.encode()).decode())
    echoes.append(base64.urlsafe_b64encode(pad + raw + after.encode()).decode())
    for echo in echoes:
        clean = redaction.redact(echo, [secret])
        assert secret not in clean
        for form in forms(secret, aligned=False):
            assert form not in clean, (form, echo, clean)
        # The base64 core that only the secret's bytes decide, at this alignment.
        encoded = base64.b64encode(pad + raw).decode()
        core = encoded[-(-8 * len(pad) // 6) + 1 : len(encoded) - 4]
        if len(core) >= 8:
            assert core not in clean.replace("-", "+").replace("_", "/")


def test_llm_keys_from_the_environment_and_our_key_shape_are_redacted(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-abcdef0123456789")
    ours = "mhd_0a1b2c3d_" + "Z" * 43
    clean = redaction.redact(f"llm sk-openai-abcdef0123456789 key {ours} url /m/k/{ours}/sessions")
    assert "sk-openai" not in clean and "Z" * 10 not in clean
    assert "mhd_0a1b2c3d_[redacted]" in clean  # the prefix names the key; it stays
    assert "/k/[redacted]/sessions" in clean


def test_error_text_is_bounded_and_redacted(settings):
    settings.MOTORHEAD = {"API_KEY": UPSTREAM_KEY}
    text = redaction.error_text(RuntimeError("x" * 5000 + UPSTREAM_KEY))
    assert len(text) == redaction.ERROR_TEXT_LENGTH and text.endswith("…")
    text = redaction.error_text(RuntimeError(f"before {json.dumps(UPSTREAM_KEY)} after"))
    assert_clean(text, UPSTREAM_KEY)
    assert text.startswith("before ") and text.endswith(" after")


# -- the upstream echoes its credentials ----------------------------------------------


@pytest.fixture
def echoing(upstream_factory):
    server = upstream_factory(
        hosted=True,
        api_key=UPSTREAM_KEY,
        client_id=CLIENT_ID,
        motorhead={"API_KEY": UPSTREAM_KEY, "CLIENT_ID": CLIENT_ID, "MAX_RETRIES": 0},
    )
    server.faults.fail_next(mode="echo")
    return server


def test_the_echo_mode_really_echoes_every_form(echoing):
    import urllib3

    answer = urllib3.request(
        "GET",
        echoing.url + "/sessions",
        headers={"x-metal-api-key": UPSTREAM_KEY, "x-metal-client-id": CLIENT_ID},
    )
    assert answer.status == 500
    body = answer.data.decode()
    basic = base64.b64encode(f"{CLIENT_ID}:{UPSTREAM_KEY}".encode()).decode()
    cid = {quote(CLIENT_ID, safe=""), quote_plus(CLIENT_ID), json.dumps(CLIENT_ID)[1:-1]}
    for form in {*forms(UPSTREAM_KEY, aligned=False), *cid, basic}:
        assert form.lower() in body.lower(), form


def test_the_client_redacts_an_echoing_server_in_message_and_body(echoing):
    client = MotorheadClient(echoing.url, api_key=UPSTREAM_KEY, client_id=CLIENT_ID)
    with pytest.raises(MotorheadServerError) as raised:
        client.add_memory("s", [("Human", "hi")])
    error = raised.value
    assert redaction.REDACTED in error.body and "echo of POST" in error.body
    assert len(error.body) <= redaction.ERROR_BODY_LENGTH
    assert_clean(str(error) + error.body + repr(error.args), UPSTREAM_KEY, CLIENT_ID)


def test_a_failed_push_stores_and_logs_no_form_of_the_key(echoing, caplog):
    session = memory.get_or_create_session("echoed")
    memory.append_messages(session, [("Human", "hi")])
    with caplog.at_level(logging.DEBUG):
        result = engine.push(session.pk)
    session.refresh_from_db()
    assert result.error and session.last_error and redaction.REDACTED in session.last_error
    assert len(session.last_error) <= redaction.ERROR_TEXT_LENGTH
    logged = everything_logged(caplog.records)
    assert "echoed" in logged  # the failure was logged ...
    assert_clean(session.last_error + result.error + logged, UPSTREAM_KEY, CLIENT_ID)  # ... cleanly


def test_sync_errors_in_rest_need_the_change_permission(echoing):
    owner = get_user_model().objects.create_user("owner")
    session = memory.get_or_create_session("mine", owner=owner)
    memory.append_messages(session, [("Human", "hi")])
    engine.push(session.pk)
    api = APIClient()
    api.force_authenticate(owner)
    url = f"/api/sessions/{session.pk}/sync/"
    hidden = api.get(url).json()["last_error"]
    assert hidden == "The last sync step failed (details need the change permission)."
    assert api.get(f"/api/sessions/{session.pk}/").json()["last_error"] == hidden
    owner.user_permissions.add(Permission.objects.get(codename="change_chatsession"))
    owner = get_user_model().objects.get(pk=owner.pk)  # no cached permissions
    api.force_authenticate(owner)
    shown = api.get(url).json()["last_error"]
    assert "echo of GET" in shown and redaction.REDACTED in shown
    assert_clean(shown, UPSTREAM_KEY, CLIENT_ID)


# -- our keys in keyed URLs ----------------------------------------------------------


def issue_key() -> str:
    user = get_user_model().objects.create_user("keyholder")
    return ApiKey.issue(user, "k")[1]


def test_keyed_urls_are_redacted_in_every_log_record_and_email(
    client, caplog, settings, monkeypatch
):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.DEBUG = False
    key = issue_key()
    wrong = "mhd_deadbeef_" + "w" * 43
    junk = "not-a-key-secret-123"

    def explode(session):  # a bug deep inside that quotes the key
        raise RuntimeError(f"boom while serving {key}")

    client.raise_request_exception = False
    with caplog.at_level(logging.DEBUG):
        assert client.get(f"/motorhead/k/{wrong}/sessions").status_code == 401
        assert client.get(f"/motorhead/k/{junk}/sessions").status_code == 401
        assert client.get(f"/motorhead/k/{key}/nope").status_code == 404
        assert client.get(f"/motorhead/k/{quote(key)}/sessions").status_code == 200
        client.post(
            f"/motorhead/k/{key}/sessions/s/memory",
            {"messages": [{"role": "Human", "content": "hi"}]},
            content_type="application/json",
        )
        monkeypatch.setattr(memory, "get_memory", explode)
        assert client.get(f"/motorhead/k/{key}/sessions/s/memory").status_code == 500
        assert client.get("/motorhead/sessions", HTTP_X_METAL_API_KEY=wrong).status_code == 401
    request_records = [r for r in caplog.records if r.name == "django.request"]
    assert {r.status_code for r in request_records} >= {401, 404, 500}
    logged = everything_logged(caplog.records)
    assert "/motorhead/k/[redacted]/sessions" in logged
    assert_clean(logged, key, wrong, junk)
    assert key[-20:] not in logged and wrong[-20:] not in logged
    # The 500 went to the admins by mail, with the request and the traceback.
    assert len(mail.outbox) == 1
    email = mail.outbox[0].subject + mail.outbox[0].body
    assert "/motorhead/k/[redacted]/sessions/s/memory" in email and "RuntimeError" in email
    assert_clean(email, key)


def test_responses_never_carry_a_key(client):
    key = issue_key()
    for path in ("/sessions", "/nope", "/sessions/x/memory"):
        for url_key in (key, key[:-2] + "zz"):
            response = client.get(f"/motorhead/k/{url_key}{path}")
            assert_clean(response.content.decode(), url_key)
        response = client.get(f"/motorhead{path}", HTTP_X_METAL_API_KEY=key[:-2] + "zz")
        assert_clean(response.content.decode(), key)


def test_every_logger_of_the_package_and_djangos_request_loggers_are_filtered():
    import importlib
    import pkgutil

    import motorhead_django

    names = {"django.request", "django.server"}
    for module in pkgutil.walk_packages(motorhead_django.__path__, "motorhead_django."):
        if ".migrations" in module.name or module.name.endswith("__main__"):
            continue
        imported = importlib.import_module(module.name)
        if isinstance(getattr(imported, "logger", None), logging.Logger):
            names.add(imported.logger.name)
    assert names - {"django.request", "django.server"}, "found none of our loggers"
    for name in names:
        assert any(
            isinstance(f, redaction.RedactingFilter) for f in logging.getLogger(name).filters
        ), name


def test_the_development_servers_request_line_is_redacted(caplog):
    key = "mhd_0123abcd_" + "s" * 43
    with caplog.at_level(logging.INFO, logger="django.server"):
        logging.getLogger("django.server").info(
            '"%s" %s %s', f"GET /motorhead/k/{key}/sessions HTTP/1.1", "401", "58"
        )
    (record,) = caplog.records
    assert record.getMessage() == '"GET /motorhead/k/[redacted]/sessions HTTP/1.1" 401 58'


def test_the_compatible_routes_never_show_an_upstream_error(upstream_factory, client, caplog):
    server = upstream_factory(
        hosted=True,
        api_key=UPSTREAM_KEY,
        client_id=CLIENT_ID,
        long_term_memory=True,
        motorhead={"API_KEY": UPSTREAM_KEY, "CLIENT_ID": CLIENT_ID, "LONG_TERM_MEMORY": True},
    )
    key = issue_key()
    owner = ApiKey.objects.get().owner
    session = memory.get_or_create_session("ltm", owner=owner)
    memory.append_messages(session, [("Human", "the order shipped")])
    server.faults.fail_next(mode="echo")
    with caplog.at_level(logging.DEBUG):
        answer = client.post(
            "/motorhead/sessions/ltm/retrieval",
            {"text": "order"},
            content_type="application/json",
            HTTP_X_METAL_API_KEY=key,
        )
    assert answer.status_code == 200
    assert [hit["content"] for hit in answer.json()] == ["the order shipped"]  # the local search
    assert server.requests_for("POST")[-1].fault == "echo"  # the upstream was asked, and failed
    body = answer.content.decode()
    assert f"127.0.0.1:{server.port}" not in body and "echo" not in body
    assert_clean(body + everything_logged(caplog.records), UPSTREAM_KEY, CLIENT_ID, key)


def test_a_token_is_redacted_from_the_sql_log(caplog):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    token = "f" * 8 + "0123456789abcdef0123456789abcdef"
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    with (
        caplog.at_level(logging.DEBUG, logger="django.db.backends"),
        CaptureQueriesContext(connection) as queries,
    ):
        assert api.get("/api/sessions/").status_code == 401
    assert any(token in query["sql"] for query in queries.captured_queries)  # it was queried
    sql_records = [r for r in caplog.records if r.name == "django.db.backends"]
    assert sql_records
    attributes = repr([(r.sql, r.params) for r in sql_records])  # structured handlers read these
    assert_clean(everything_logged(sql_records) + attributes, token)


URL_PASSWORD = "hunter2/supersecret"


def test_credentials_in_the_url_are_in_no_error_log_or_answer(settings, caplog):
    settings.MOTORHEAD = {
        "URL": f"http://mh-admin:{quote(URL_PASSWORD, safe='')}@127.0.0.1:9/",
        "CONNECT_TIMEOUT": 0.2,
        "READ_TIMEOUT": 0.2,
        "RETRY_BACKOFF": 0.01,
        "RETRY_BACKOFF_MAX": 0.01,
    }
    user = get_user_model().objects.create_user("alice")
    session = memory.create_session("s1", owner=user)
    memory.append_messages(session, [("Human", "hi")])
    caplog.set_level(logging.DEBUG)
    try:
        engine.push(session.pk)
    except Exception as exc:  # the server is down: what it says is checked below
        caplog.handler.handle(logging.makeLogRecord({"msg": repr(exc)}))
    session.refresh_from_db()
    assert session.last_error and "127.0.0.1:9" in session.last_error
    api = APIClient()
    api.force_authenticate(user)
    answer = api.get(f"/api/sessions/{session.pk}/sync/").content.decode()
    client = MotorheadClient.from_settings()
    for text in (session.last_error, caplog.text, answer, repr(client)):
        for secret in (URL_PASSWORD, quote(URL_PASSWORD, safe=""), "mh-admin"):
            assert secret not in text
    assert {"mh-admin", URL_PASSWORD} <= set(redaction.configured_secrets())
    assert redaction.redact(f"echo {URL_PASSWORD}") == f"echo {redaction.REDACTED}"
