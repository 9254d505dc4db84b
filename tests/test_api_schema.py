"""The OpenAPI schema (drf-spectacular): served, valid, and true to what the views answer."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
from django.contrib.auth import get_user_model
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from motorhead_django import memory
from motorhead_django.models import ApiKey

from .test_example_project import manage

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(client) -> dict[str, Any]:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def test_the_schema_is_served_and_valid_openapi(schema):
    validate_schema(schema)
    paths = set(schema["paths"])
    assert {"/api/sessions/", "/api/sessions/{id}/messages/", "/motorhead/sessions"} <= paths
    assert not any("{api_key}" in path for path in paths)
    assert "MotorheadApiKey" in schema["components"]["securitySchemes"]


def test_the_example_project_schema_generates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    result = manage("spectacular", "--validate", "--fail-on-warn", "--file", str(out), DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert "/motorhead/sessions/{session_id}/memory" in out.read_text()


def _jsonschema(node: Any) -> Any:
    """OpenAPI 3.0 → JSON Schema: ``nullable: true`` becomes a null alternative."""
    if isinstance(node, list):
        return [_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _jsonschema(value) for key, value in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


def check(schema: dict[str, Any], path: str, method: str, response) -> None:
    """Validate a real response body against the schema's response for its status."""
    operation = schema["paths"][path][method]
    content = operation["responses"][str(response.status_code)].get("content")
    if content is None:
        assert not response.content
        return
    body_schema = content["application/json"]["schema"]
    full = {
        **_jsonschema(body_schema),
        "components": _jsonschema(copy.deepcopy(schema["components"])),
    }
    jsonschema.validate(json.loads(response.content), full)


def test_responses_match_the_schema(schema):
    user = get_user_model().objects.create(username="s")
    api = APIClient()
    api.force_authenticate(user)
    created = api.post("/api/sessions/", {"session_id": "a/b", "context": "c"}, format="json")
    check(schema, "/api/sessions/", "post", created)
    pk = created.json()["id"]
    session = memory.get_or_create_session("a/b")
    memory.append_messages(session, [("Human", "hi cat"), ("AI", "hello")])
    for path, url in [
        ("/api/sessions/", "/api/sessions/"),
        ("/api/sessions/{id}/", f"/api/sessions/{pk}/"),
        ("/api/sessions/{id}/messages/", f"/api/sessions/{pk}/messages/"),
        ("/api/sessions/{id}/memory/", f"/api/sessions/{pk}/memory/"),
        ("/api/sessions/{id}/sync/", f"/api/sessions/{pk}/sync/"),
    ]:
        check(schema, path, "get", api.get(url))
    found = api.post(f"/api/sessions/{pk}/retrieval/", {"text": "cat"}, format="json")
    check(schema, "/api/sessions/{id}/retrieval/", "post", found)
    appended = api.post(f"/api/sessions/{pk}/messages/", {"role": "Human", "content": "x"})
    check(schema, "/api/sessions/{id}/messages/", "post", appended)
    check(schema, "/api/sessions/{id}/", "patch", api.patch(f"/api/sessions/{pk}/", {}))

    _, key = ApiKey.issue(user, "k")
    compat = APIClient()
    compat.credentials(HTTP_X_METAL_API_KEY=key)
    memory_path = "/motorhead/sessions/{session_id}/memory"
    posted = compat.post(
        "/motorhead/sessions/c/memory", {"messages": [{"role": "Human", "content": "cat"}]}, "json"
    )
    check(schema, memory_path, "post", posted)
    check(schema, "/motorhead/", "get", compat.get("/motorhead/"))
    check(schema, "/motorhead/sessions", "get", compat.get("/motorhead/sessions"))
    check(schema, memory_path, "get", compat.get("/motorhead/sessions/c/memory"))
    found = compat.post("/motorhead/sessions/c/retrieval", {"text": "cat"}, "json")
    check(schema, "/motorhead/sessions/{session_id}/retrieval", "post", found)
    check(schema, memory_path, "delete", compat.delete("/motorhead/sessions/c/memory"))
    check(schema, "/api/sessions/{id}/", "delete", api.delete(f"/api/sessions/{pk}/"))


def test_error_answers_are_in_the_schema(schema):
    """Each status a client can get is listed, with a body the schema allows."""

    def expect(status: int, path: str, method: str, response) -> None:
        assert response.status_code == status, response.content
        check(schema, path, method, response)

    user = get_user_model().objects.create(username="e")
    api = APIClient()
    expect(401, "/api/sessions/", "get", api.get("/api/sessions/"))
    api.force_authenticate(user)
    expect(400, "/api/sessions/", "get", api.get("/api/sessions/", {"ordering": "x"}))
    expect(404, "/api/sessions/", "get", api.get("/api/sessions/", {"page": 9}))
    expect(404, "/api/sessions/{id}/", "get", api.get("/api/sessions/999/"))
    not_json = api.post("/api/sessions/", "x", content_type="text/plain")
    expect(415, "/api/sessions/", "post", not_json)
    pk = api.post("/api/sessions/", {"session_id": "s"}, format="json").json()["id"]
    expect(400, "/api/sessions/{id}/sync/", "post", api.post(f"/api/sessions/{pk}/sync/"))

    _, key = ApiKey.issue(user, "k", namespace="team")
    compat = APIClient()
    expect(401, "/motorhead/sessions", "get", compat.get("/motorhead/sessions"))
    compat.credentials(HTTP_X_METAL_API_KEY=key)
    memory_path = "/motorhead/sessions/{session_id}/memory"
    other = compat.get("/motorhead/sessions/s/memory", {"namespace": "other"})
    expect(403, memory_path, "get", other)
    expect(400, memory_path, "get", compat.get("/motorhead/sessions/a%00b/memory"))


def test_the_schema_states_what_the_views_refuse(schema):
    """Blank roles, empty batches, out-of-range pages and control characters are 400s;
    the schema says so, so a valid request by the schema is one the views can take."""

    def valid(name: str, body: Any) -> bool:
        components = _jsonschema(copy.deepcopy(schema["components"]))
        full = {"$ref": f"#/components/schemas/{name}", "components": components}
        return jsonschema.Draft7Validator(full).is_valid(body)

    assert valid("Message", {"role": "Human", "content": ""})
    assert not valid("Message", {"role": "", "content": "x"})
    assert not valid("Message", {"role": "Human", "content": "a\x00b"})
    assert not valid("MemoryWrite", {"messages": []})
    assert valid("MemoryWrite", {"messages": [{"role": "AI", "content": "x"}], "context": None})
    assert valid("MessagesAppend", {"role": "AI", "content": "x"})
    assert not valid("MessagesAppend", {})
    assert not valid("Retrieval", {"text": ""})
    parameters = schema["paths"]["/motorhead/sessions/{session_id}/memory"]["get"]["parameters"]
    session_id = next(p["schema"] for p in parameters if p["name"] == "session_id")
    assert not jsonschema.Draft7Validator(session_id).is_valid("a\nb")
    paging = schema["paths"]["/motorhead/sessions"]["get"]["parameters"]
    assert {
        "name": "page",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
    } in paging
