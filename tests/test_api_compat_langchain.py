"""LangChain's own MotorheadMemory (langchain-community), unchanged, against a live server.

It sends no headers to a self-hosted URL, so the key rides in the base URL.
"""

from __future__ import annotations

import asyncio

import pytest
from django.contrib.auth import get_user_model

from motorhead_django.models import ApiKey, ChatSession

MotorheadMemory = pytest.importorskip("langchain_community.memory.motorhead_memory").MotorheadMemory

# Against the example project's own URLs, as a deployment mounts them.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("example_project.urls")]


def fresh_memory(url: str, session_id: str):
    memory = MotorheadMemory(session_id=session_id, url=url, timeout=10)
    asyncio.run(memory.init())
    return memory


def test_langchain_round_trip_with_the_key_in_the_url(live_server):
    owner = get_user_model().objects.create(username="lc")
    _, key = ApiKey.issue(owner, "langchain")
    url = f"{live_server.url}/motorhead/k/{key}"

    first = fresh_memory(url, "lc/chat.1")
    assert first.load_memory_variables({}) == {"history": ""}
    first.save_context({"input": "Hi, I am Ann"}, {"output": "Hello Ann"})
    first.save_context({"input": "What is my name?"}, {"output": "Ann"})

    # A new process would start like this: init() reads the window back, in order.
    second = fresh_memory(url, "lc/chat.1")
    assert second.load_memory_variables({}) == {
        "history": "Human: Hi, I am Ann\nAI: Hello Ann\nHuman: What is my name?\nAI: Ann"
    }
    session = ChatSession.objects.get(session_id="lc/chat.1")
    assert session.owner == owner and session.last_sequence == 4

    second.delete_session()
    assert not ChatSession.objects.filter(session_id="lc/chat.1").exists()
    assert fresh_memory(url, "lc/chat.1").load_memory_variables({}) == {"history": ""}


def test_langchain_context_and_window(live_server, settings):
    settings.MOTORHEAD = {"WINDOW_SIZE": 4}
    owner = get_user_model().objects.create(username="lc2")
    _, key = ApiKey.issue(owner, "langchain")
    url = f"{live_server.url}/motorhead/k/{key}"
    memory = fresh_memory(url, "window")
    for n in range(5):
        memory.save_context({"input": f"q{n}"}, {"output": f"a{n}"})
    ChatSession.objects.filter(session_id="window").update(context="They count.")
    again = fresh_memory(url, "window")
    # WINDOW_SIZE + 1 newest messages, back in conversation order; all 10 kept here.
    assert (
        again.load_memory_variables({})["history"] == "AI: a2\nHuman: q3\nAI: a3\nHuman: q4\nAI: a4"
    )
    assert again.context == "They count."
    assert ChatSession.objects.get(session_id="window").messages.count() == 10


def test_langchain_without_a_key_only_when_anonymous_access_is_allowed(live_server, settings):
    url = f"{live_server.url}/motorhead"
    refused = MotorheadMemory(session_id="anon", url=url, timeout=10)
    refused.save_context({"input": "q"}, {"output": "a"})  # LangChain ignores the 401
    assert not ChatSession.objects.exists()
    settings.MOTORHEAD = {"COMPAT_ALLOW_ANONYMOUS": True}
    allowed = MotorheadMemory(session_id="anon", url=url, timeout=10)
    allowed.save_context({"input": "q"}, {"output": "a"})
    assert fresh_memory(url, "anon").load_memory_variables({}) == {"history": "Human: q\nAI: a"}
