"""LangChain JS's MotorheadMemory, unchanged, against the example project's compatible routes.

Runs ``tests/js/motorhead_memory.mjs`` with Node.js against a live server. Its
packages are pinned in ``tests/js/package-lock.json``; ``.ci/run`` installs them
(``npm ci --prefix tests/js``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from motorhead_django import memory
from motorhead_django.models import ApiKey, ChatSession

from .conftest import IN_CI

JS = Path(__file__).resolve().parent / "js"
NODE = shutil.which("node")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("example_project.urls")]


@pytest.fixture
def node() -> str:
    missing = "node" if NODE is None else ""
    if not missing and not (JS / "node_modules" / "@langchain" / "community").is_dir():
        missing = "tests/js/node_modules (npm ci --prefix tests/js)"
    if missing:
        if IN_CI:
            pytest.fail(f"needs {missing}; CI=true, so a missing client is a failure")
        pytest.skip(f"needs {missing}")
    assert NODE is not None
    return NODE


def run_client(node: str, url: str, session_id: str) -> dict:
    result = subprocess.run(
        [node, str(JS / "motorhead_memory.mjs"), url, session_id],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_langchain_js_round_trip_with_the_key_in_the_url(node, live_server):
    owner = get_user_model().objects.create_user("js-user")
    _, key = ApiKey.issue(owner, "LangChain JS")
    # The JS client sends key headers only to Metal's URL: the key goes in ours.
    seen = run_client(node, f"{live_server.url}/motorhead/k/{key}", "js-chat")
    assert seen["before"] == ""  # a new session: nothing to load
    assert seen["after"] == [
        ["human", "I am Ada."],
        ["ai", "Hello, Ada."],
        ["human", "Who am I?"],
        ["ai", "You are Ada."],
    ]
    session = ChatSession.objects.get(session_id="js-chat")
    assert session.owner == owner
    assert [(m.role, m.content) for m in memory.history(session)] == [
        ("Human", "I am Ada."),
        ("AI", "Hello, Ada."),
        ("Human", "Who am I?"),
        ("AI", "You are Ada."),
    ]


def test_langchain_js_reads_our_summary(node, live_server):
    owner = get_user_model().objects.create_user("js-reader")
    _, key = ApiKey.issue(owner, "LangChain JS")
    session = memory.get_or_create_session("js-summary", owner=owner)
    memory.append_messages(session, [("Human", "earlier")], context="They met yesterday.")
    seen = run_client(node, f"{live_server.url}/motorhead/k/{key}", "js-summary")
    assert seen["context"] == "They met yesterday."
    assert seen["after"][0] == ["human", "earlier"]
