"""API documentation pages, the API root, and the browsable API's forms on every resource."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from motorhead_django import memory
from motorhead_django.api.schema import plain_description
from motorhead_django.models import ApiKey

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client() -> Client:
    client = Client(raise_request_exception=False)
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def test_api_root_lists_the_resources_and_the_docs(staff_client):
    response = staff_client.get("/api/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    body = response.json()
    assert body["sessions"] == "http://testserver/api/sessions/"
    assert body["messages"] == "http://testserver/api/sessions/{id}/messages/"
    assert body["schema"] == "http://testserver/api/schema/"
    assert body["swagger_ui"] == "http://testserver/api/docs/"
    assert body["redoc"] == "http://testserver/api/redoc/"
    # Anyone may read the links; the resources keep their own policy.
    assert Client().get("/api/").status_code == 200
    assert Client().get("/api/sessions/").status_code in (401, 403)


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_documentation_pages_use_bundled_assets(client, path):
    response = client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assert "drf_spectacular_sidecar" in html  # served from our static files
    assert "cdn.jsdelivr.net" not in html and "unpkg.com" not in html


def test_descriptions_carry_no_rest_markup(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    assert "``" not in schema and ":func:" not in schema and ":class:" not in schema
    assert plain_description("``GET``: see :func:`~a.b` and :mod:`c`::") == (
        "`GET`: see `a.b` and `c`:"
    )


def test_every_rest_resource_answers_its_forms_metadata(staff_client):
    """OPTIONS (what the browsable API asks for its forms) and the HTML page, per route."""
    session = memory.get_or_create_session("forms")
    memory.append_messages(session, [("Human", "hi")])
    base = f"/api/sessions/{session.pk}/"
    for path in [
        "/api/",
        "/api/sessions/",
        base,
        base + "messages/",
        base + "memory/",
        base + "sync/",
    ]:
        options = staff_client.options(path, HTTP_ACCEPT="application/json")
        assert options.status_code == 200, (path, options.content[:300])
        assert "``" not in options.json()["description"]
        page = staff_client.get(path, HTTP_ACCEPT="text/html")
        assert page.status_code == 200, path
    options = staff_client.options(base + "retrieval/", HTTP_ACCEPT="application/json")
    assert options.status_code == 200
    # The detail's PUT form is described (it needed the object, and answered a 500).
    assert "PUT" in staff_client.options(base, HTTP_ACCEPT="application/json").json()["actions"]


def test_compatible_routes_answer_their_metadata_with_a_key():
    owner = get_user_model().objects.create(username="bot-owner")
    _, raw = ApiKey.issue(owner, "bot")
    client = Client(raise_request_exception=False)
    for path in ["/motorhead/", "/motorhead/sessions", "/motorhead/sessions/abc/memory"]:
        response = client.options(path, HTTP_X_METAL_API_KEY=raw)
        assert response.status_code == 200, (path, response.content[:300])
