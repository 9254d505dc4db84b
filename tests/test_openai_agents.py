"""The OpenAI Agents SDK session backed by the app's models.

The generic session tests below follow the ones the SDK runs against each of its own
backends (openai-agents-python, tests/extensions/memory/test_redis_session.py and
tests/memory/test_session.py, MIT licence): written here again against DjangoSession,
with only the fixture that builds the session changed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection, connections

pytest.importorskip("agents", reason="install the openai-agents extra")

from agents import Agent, Runner, set_tracing_disabled  # noqa: E402
from agents.memory import Session, SessionSettings  # noqa: E402
from agents.testing import ScriptedModel, assistant_message, function_call  # noqa: E402

from motorhead_django import memory  # noqa: E402
from motorhead_django.exceptions import (  # noqa: E402
    MotorheadLegalHoldError,
    MotorheadValidationError,
)
from motorhead_django.models import ChatMessage, ChatSession, SyncState  # noqa: E402
from motorhead_django.openai_agents import DjangoSession, item_role_and_text  # noqa: E402

pytestmark = pytest.mark.django_db
set_tracing_disabled(True)  # no trace export (it would want an OpenAI key)

ROOT = Path(__file__).resolve().parent.parent


def run(flow: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine the way a Django view would: the ORM calls it awaits run in this
    thread, on the test's connection and inside its transaction."""

    async def call() -> Any:
        return await flow()

    return async_to_sync(call)()


def make_session(session_id: str = "agents-test", **options: Any) -> DjangoSession:
    """The one fixture the SDK's tests build differently per backend."""
    return DjangoSession(session_id, **options)


# Every item type the Responses API feeds back as input.
ITEMS: list[Any] = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": "Use tools."},
    {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "What is in this picture?"},
            {
                "type": "input_image",
                "image_url": "data:image/png;base64,iVBORw0KGgo=",
                "detail": "auto",
            },
            {"type": "input_file", "file_id": "file-1", "filename": "notes.pdf"},
        ],
    },
    {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "Look at the image, then call the tool."}],
        "encrypted_content": "gAAAA...",
    },
    {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_1",
        "name": "lookup",
        "arguments": '{"q": "cat", "n": 1}',
        "status": "completed",
    },
    {"type": "function_call_output", "call_id": "call_1", "output": '{"answer": "a cat"}'},
    {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [
            {"type": "output_text", "text": "A cat.", "annotations": [], "logprobs": []},
            {"type": "refusal", "refusal": "No more."},
        ],
    },
    {
        "type": "computer_call",
        "id": "cu_1",
        "call_id": "c2",
        "action": {"type": "click", "x": 1, "y": 2},
        "pending_safety_checks": [],
        "status": "completed",
    },
    {
        "type": "computer_call_output",
        "call_id": "c2",
        "output": {"type": "computer_screenshot", "image_url": "data:image/png;base64,AA=="},
    },
    {"type": "item_reference", "id": "msg_0"},
    {"role": "user", "content": "Thanks, 1.5 × 2 = 3 ✓", "extra": {"nested": [1, 2.5, None, True]}},
]


# ---- the SDK's generic session tests ---------------------------------------------------


def test_direct_ops():
    async def flow() -> None:
        session = make_session()
        await session.add_items(
            [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there!"}]
        )
        retrieved = await session.get_items()
        assert [i.get("content") for i in retrieved] == ["Hello", "Hi there!"]
        popped = await session.pop_item()
        assert popped is not None and popped.get("content") == "Hi there!"
        assert [i.get("content") for i in await session.get_items()] == ["Hello"]
        await session.clear_session()
        assert await session.get_items() == []

    run(flow)


async def run_agent(runner_method: str, agent: Agent, text: str, **kwargs: Any) -> Any:
    """The SDK's tests' helper: one turn through Runner.run, run_sync or run_streamed."""
    if runner_method == "run":
        return await Runner.run(agent, text, **kwargs)
    if runner_method == "run_sync":
        return await asyncio.to_thread(Runner.run_sync, agent, text, **kwargs)
    result = Runner.run_streamed(agent, text, **kwargs)
    async for _event in result.stream_events():
        pass
    return result


@pytest.mark.parametrize("runner_method", ["run", "run_sync", "run_streamed"])
@pytest.mark.django_db(transaction=True)
def test_runner_integration_two_turns_the_second_sees_the_first(runner_method):
    async def flow() -> None:
        try:
            session = make_session("runner")
            model = ScriptedModel()
            agent = Agent(name="test", model=model)
            model.enqueue([assistant_message("San Francisco")])
            question = "What city is the Golden Gate Bridge in?"
            first = await run_agent(runner_method, agent, question, session=session)
            assert first.final_output == "San Francisco"
            model.enqueue([assistant_message("California")])
            second = await run_agent(runner_method, agent, "What state is it in?", session=session)
            assert second.final_output == "California"
            seen = model.calls[-1].input
            assert len(seen) == 3
            assert any("Golden Gate Bridge" in str(item.get("content", "")) for item in seen)
            assert "San Francisco" in json.dumps(seen)
        finally:
            await sync_to_async(connections.close_all)()

    asyncio.run(flow())  # no outer async_to_sync: the ORM runs in asgiref's own thread
    stored = ChatSession.objects.get(session_id="runner")
    rows = list(stored.messages.chronological())
    assert [(m.role, m.content) for m in rows] == [
        ("Human", "What city is the Golden Gate Bridge in?"),
        ("AI", "San Francisco"),
        ("Human", "What state is it in?"),
        ("AI", "California"),
    ]
    assert all(m.item is not None for m in rows)


def test_runner_with_a_tool_call_keeps_call_and_output():
    def lookup(q: str) -> str:
        """Look something up."""
        return f"found {q}"

    from agents import function_tool

    async def flow() -> list[Any]:
        session = make_session("tools")
        model = ScriptedModel()
        agent = Agent(name="test", model=model, tools=[function_tool(lookup)])
        model.enqueue([function_call("lookup", {"q": "cats"}, call_id="call_9")])
        model.enqueue([assistant_message("Cats found.")])
        result = await Runner.run(agent, "Find cats", session=session)
        assert result.final_output == "Cats found."
        model.enqueue([assistant_message("Still cats.")])
        await Runner.run(agent, "Again?", session=session)
        return model.calls[-1].input

    seen = run(flow)
    assert [i.get("type") for i in seen if i.get("type")][:2] == [
        "function_call",
        "function_call_output",
    ]
    rows = list(ChatSession.objects.get(session_id="tools").messages.chronological())
    assert [m.role for m in rows] == ["Human", "AI", "Tool", "AI", "Human", "AI"]
    assert rows[1].content == '[function_call lookup] {"q":"cats"}'
    assert rows[2].content == "[function_call_output call_9] found cats"


@pytest.mark.parametrize("runner_method", ["run", "run_sync", "run_streamed"])
@pytest.mark.django_db(transaction=True)
def test_session_limit_through_run_config(runner_method):
    """The SDK's tests/memory/test_session_limit.py: limit N, 0, none and more than all."""
    from agents import RunConfig

    async def turn(agent: Agent, model: ScriptedModel, n: int, limit: int | None) -> list[Any]:
        model.enqueue([assistant_message(f"Reply {n}")])
        config = RunConfig(session_settings=SessionSettings(limit=limit))
        await run_agent(runner_method, agent, f"Message {n}", session=session, run_config=config)
        return model.calls[-1].input

    async def flow() -> None:
        try:
            model = ScriptedModel()
            agent = Agent(name="test", model=model)
            for n in (1, 2, 3):
                await turn(agent, model, n, None)
            assert len(await session.get_items()) == 6
            seen = await turn(agent, model, 4, 2)
            assert [i.get("content") for i in (seen[0], seen[2])] == ["Message 3", "Message 4"]
            assert seen[1]["content"][0]["text"] == "Reply 3"
            assert await turn(agent, model, 5, 0) == [{"role": "user", "content": "Message 5"}]
            assert len(await turn(agent, model, 6, None)) == 11
            assert len(await turn(agent, model, 7, 100)) == 13
        finally:
            await sync_to_async(connections.close_all)()

    session = make_session("limits")
    asyncio.run(flow())


@pytest.mark.django_db(transaction=True)
def test_session_limit_drops_an_output_whose_call_is_cut_off():
    """The SDK's test_session_limit_drops_unmatched_history_function_call_output."""
    from agents import RunConfig

    history: list[Any] = [
        {"role": "user", "content": "What is the weather?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "It is sunny.", "annotations": []}],
        },
    ]

    async def flow() -> list[Any]:
        try:
            session = make_session("limit-pair")
            await session.add_items(history)
            assert await session.get_items(limit=2) == history[-2:]
            model = ScriptedModel()
            model.enqueue([assistant_message("Tomorrow is sunny too.")])
            config = RunConfig(session_settings=SessionSettings(limit=2))
            agent = Agent(name="test", model=model)
            await Runner.run(agent, "What about tomorrow?", session=session, run_config=config)
            return model.calls[-1].input
        finally:
            await sync_to_async(connections.close_all)()

    assert asyncio.run(flow()) == [history[-1], {"role": "user", "content": "What about tomorrow?"}]


def test_session_isolation():
    async def flow() -> str:
        one, two = make_session("s-1"), make_session("s-2")
        model = ScriptedModel()
        agent = Agent(name="test", model=model)
        model.enqueue([assistant_message("I like cats.")])
        await Runner.run(agent, "I like cats.", session=one)
        model.enqueue([assistant_message("I like dogs.")])
        await Runner.run(agent, "I like dogs.", session=two)
        model.enqueue([assistant_message("You said you like cats.")])
        await Runner.run(agent, "What animal did I say I like?", session=one)
        return json.dumps(model.calls[-1].input)

    seen = run(flow)
    assert "cats" in seen and "dogs" not in seen


def test_get_items_with_limit():
    async def flow() -> None:
        session = make_session()
        await session.add_items(
            [
                {"role": r, "content": c}
                for r, c in [("user", "1"), ("assistant", "2"), ("user", "3"), ("assistant", "4")]
            ]
        )
        assert [i["content"] for i in await session.get_items(limit=2)] == ["3", "4"]
        assert len(await session.get_items()) == 4
        assert len(await session.get_items(limit=10)) == 4
        assert await session.get_items(limit=0) == []

    run(flow)


def test_pop_from_empty_session():
    async def flow() -> None:
        session = make_session("empty")
        await session.clear_session()
        assert await session.pop_item() is None

    run(flow)


def test_a_session_under_legal_hold_refuses_pop_and_clear_and_keeps_its_items():
    async def flow() -> list[Any]:
        session = make_session("held")
        await session.add_items(ITEMS[:3])
        await sync_to_async(ChatSession.objects.filter(session_id="held").update)(legal_hold=True)
        with pytest.raises(MotorheadLegalHoldError):
            await session.pop_item()
        with pytest.raises(MotorheadLegalHoldError):
            await session.clear_session()
        return await session.get_items()

    assert run(flow) == ITEMS[:3]


def test_add_empty_items_list_is_a_no_op(django_assert_num_queries):
    session = make_session()
    with django_assert_num_queries(0):
        run(lambda: session.add_items([]))
    assert run(session.get_items) == []


def test_unicode_and_problematic_strings_come_back_unchanged():
    contents = [
        "こんにちは",
        "😊👍",
        "Привет",
        "O'Reilly",
        "DROP TABLE sessions;",
        '"SELECT * FROM users WHERE name = "admin";"',
        "Robert'); DROP TABLE students;--",
        '{"malicious": "json"}',
        "\\n\\t\\r Special escapes",
        "Line1\nLine2\tTabbed",
    ]
    items = [
        {"role": "user" if n % 2 else "assistant", "content": c} for n, c in enumerate(contents)
    ]
    session = make_session()
    run(lambda: session.add_items(items))
    assert run(session.get_items) == items


def test_concurrent_access_in_one_loop():
    async def flow() -> list[Any]:
        session = make_session("concurrent")

        async def add(start: int) -> None:
            await session.add_items(
                [{"role": "user", "content": f"Message {start + i}"} for i in range(5)]
            )

        await asyncio.gather(add(0), add(5), add(10))
        return await session.get_items()

    contents = [item["content"] for item in run(flow)]
    assert sorted(contents) == sorted(f"Message {i}" for i in range(15))
    # Each batch stayed together, in its order.
    for start in range(0, 15, 5):
        assert contents[start : start + 5] == [
            f"Message {int(contents[start].split()[1]) + i}" for i in range(5)
        ]


def test_session_settings_default_constructor_and_dictionary():
    assert make_session().session_settings == SessionSettings()
    assert make_session(session_settings=SessionSettings(limit=3)).session_settings.limit == 3
    settings = make_session(session_settings={"limit": 4}).session_settings
    assert isinstance(settings, SessionSettings) and settings.limit == 4


def test_get_items_uses_session_settings_limit_and_an_explicit_one_overrides_it():
    session = make_session(session_settings=SessionSettings(limit=2))
    run(lambda: session.add_items([{"role": "user", "content": str(n)} for n in range(5)]))
    assert [i["content"] for i in run(session.get_items)] == ["3", "4"]
    assert [i["content"] for i in run(lambda: session.get_items(limit=4))] == ["1", "2", "3", "4"]


def test_runner_with_session_settings_override():
    async def flow() -> list[Any]:
        session = make_session("override", session_settings=SessionSettings(limit=100))
        await session.add_items([{"role": "user", "content": f"old {n}"} for n in range(6)])
        model = ScriptedModel()
        agent = Agent(name="test", model=model)
        model.enqueue([assistant_message("ok")])
        from agents import RunConfig

        await Runner.run(
            agent,
            "new",
            session=session,
            run_config=RunConfig(session_settings=SessionSettings(limit=2)),
        )
        return model.calls[-1].input

    seen = run(flow)
    assert [i.get("content") for i in seen] == ["old 4", "old 5", "new"]


# ---- ours: exact round trip, storage, the event loop, processes --------------------------


def test_every_item_type_comes_back_equal_and_is_stored_readably():
    session = make_session("all-types")
    run(lambda: session.add_items(ITEMS))
    assert run(session.get_items) == ITEMS
    assert run(lambda: make_session("all-types").get_items(limit=3)) == ITEMS[-3:]
    rows = list(ChatSession.objects.get(session_id="all-types").messages.chronological())
    assert [m.item for m in rows] == ITEMS
    assert [(m.role, m.content) for m in rows] == [
        ("System", "Be brief."),
        ("System", "Use tools."),
        ("Human", "What is in this picture?\n[image]\n[file notes.pdf]"),
        ("AI", "[reasoning] Look at the image, then call the tool."),
        ("AI", '[function_call lookup] {"q": "cat", "n": 1}'),
        ("Tool", '[function_call_output call_1] {"answer": "a cat"}'),
        ("AI", "A cat.\nNo more."),
        ("AI", '[computer_call] {"type": "click", "x": 1, "y": 2}'),
        ("Tool", "[computer_call_output c2] [computer_screenshot]"),
        ("AI", "[item_reference]"),
        ("Human", "Thanks, 1.5 × 2 = 3 ✓"),
    ]
    assert run(session.pop_item) == ITEMS[-1]


def test_item_text_is_cut_but_the_item_is_kept_whole(settings):
    settings.MOTORHEAD = {"MAX_CONTENT_LENGTH": 20}
    item = {"role": "user", "content": "x" * 50}
    assert item_role_and_text(item) == ("Human", "x" * 19 + "…")
    session = make_session()
    run(lambda: session.add_items([item]))
    assert run(session.get_items) == [item]


def test_messages_written_without_items_are_read_as_messages():
    stored = memory.get_or_create_session("plain")
    memory.append_messages(
        stored, [("Human", "hi"), ("AI", "hello"), ("System", "s"), ("Critic", "meh")]
    )
    assert run(make_session("plain").get_items) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": "s"},
        {"role": "user", "content": "meh"},
    ]


def test_messages_langchain_wrote_are_read_as_messages():
    stored = memory.get_or_create_session("from-langchain")
    memory.append_messages(
        stored,
        [("Human", "hi"), ("AI", "hello")],
        items=[
            {"type": "human", "data": {"content": "hi"}},
            {"type": "ai", "data": {"content": "hello"}},
        ],
    )
    assert run(make_session("from-langchain").get_items) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]


def test_bad_items_are_refused_with_a_field_and_nothing_is_written():
    session = make_session("bad")
    deep: Any = {"role": "user", "content": "x"}
    cursor = deep
    for _ in range(40):
        cursor["nested"] = {}
        cursor = cursor["nested"]
    for bad in (
        {"role": "user", "content": "nul \x00"},
        deep,
        {"role": "user", "content": float("nan")},
    ):
        with pytest.raises(MotorheadValidationError) as caught:
            run(lambda bad=bad: session.add_items([{"role": "user", "content": "fine"}, bad]))
        assert any(key.startswith("messages[1].item") for key in caught.value.errors)
    assert not ChatMessage.objects.filter(session__session_id="bad").exists()


def test_an_oversized_item_is_refused(settings):
    settings.MOTORHEAD = {"MAX_REQUEST_BYTES": 1000}
    with pytest.raises(MotorheadValidationError) as caught:
        run(lambda: make_session().add_items([{"role": "user", "content": "y" * 2000}]))
    assert "MAX_REQUEST_BYTES" in str(caught.value.errors)


def test_a_batch_larger_than_the_request_limit_is_one_atomic_write(settings):
    settings.MOTORHEAD = {"MAX_MESSAGES_PER_REQUEST": 3}
    session = make_session("big")
    items = [{"role": "user", "content": str(n)} for n in range(8)]
    run(lambda: session.add_items(items))
    assert run(session.get_items) == items
    with pytest.raises(MotorheadValidationError):
        run(lambda: session.add_items([*items[:5], {"role": "user", "content": "\x00"}]))
    assert len(run(session.get_items)) == 8


def test_owner_and_default_namespace(django_user_model, settings):
    settings.MOTORHEAD = {"NAMESPACE": "shop"}
    ada = django_user_model.objects.create_user("ada")
    run(lambda: DjangoSession("owned", ada).add_items([{"role": "user", "content": "mine"}]))
    stored = ChatSession.objects.get(session_id="owned")
    assert stored.owner == ada and stored.namespace == "shop"


def test_an_invalid_session_id_is_refused_at_construction():
    with pytest.raises(MotorheadValidationError):
        DjangoSession("bad\nid")
    with pytest.raises(MotorheadValidationError):  # reserved for the server ids of owned sessions
        DjangoSession("u12:theirs")


def test_clear_leaves_no_rows_and_the_id_is_reusable_at_once():
    session = make_session("again")
    run(lambda: session.add_items(ITEMS[:3]))
    run(session.clear_session)
    assert not ChatSession.objects.filter(session_id="again").exists()
    assert not ChatMessage.objects.filter(session__session_id="again").exists()
    run(lambda: session.add_items([{"role": "user", "content": "fresh"}]))
    assert run(session.get_items) == [{"role": "user", "content": "fresh"}]


def test_archive_on_clear_keeps_the_full_record_in_an_archive_session(django_user_model):
    ada = django_user_model.objects.create_user("ada")
    session = DjangoSession("compact-me", ada, archive_on_clear=True)
    run(lambda: session.add_items(ITEMS))
    run(session.clear_session)
    run(lambda: session.add_items([{"role": "user", "content": "summary"}]))
    assert run(session.get_items) == [{"role": "user", "content": "summary"}]
    archive = ChatSession.objects.get(session_id__startswith="compact-me~archived-")
    assert archive.owner == ada
    assert [m.item for m in archive.messages.chronological()] == ITEMS
    run(session.clear_session)  # a second clear archives under another id
    assert ChatSession.objects.filter(session_id__startswith="compact-me~archived-").count() == 2


def test_the_compaction_wrapper_keeps_the_record_with_archive_on_clear():
    """OpenAIResponsesCompactionSession (no snapshot hook here) clears, then adds its output."""
    from agents.memory import OpenAIResponsesCompactionSession

    class Compacted:
        output = [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "summary"}],
            }
        ]
        usage = None

    class Responses:
        async def compact(self, **kwargs: Any) -> Compacted:
            return Compacted()

    class Client:
        responses = Responses()

    underlying = make_session("wrapped", archive_on_clear=True)
    items = [{"role": "user", "content": f"q{n}"} for n in range(3)]
    wrapper = OpenAIResponsesCompactionSession("wrapped", underlying, client=Client())  # type: ignore[arg-type]

    async def flow() -> list[Any]:
        await wrapper.add_items(items)
        await wrapper.run_compaction({"force": True, "compaction_mode": "input"})
        return await underlying.get_items()

    after = run(flow)
    assert [json.dumps(i) for i in after] != [json.dumps(i) for i in items]
    assert "summary" in json.dumps(after)
    archive = ChatSession.objects.get(session_id__startswith="wrapped~archived-")
    assert [m.item for m in archive.messages.chronological()] == items


@pytest.mark.parametrize("operation", ["add", "pop", "clear"])
def test_a_cancelled_caller_learns_of_it_only_once_the_change_is_done(operation, monkeypatch):
    """As the SDK's own backends (test_mutation_cancellation_waits_for_authoritative_outcome)."""
    import threading

    session = make_session("cancelled")
    run(
        lambda: session.add_items(
            [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]
        )
    )
    started, release = threading.Event(), threading.Event()
    original = memory.get_or_create_session

    def slow(*args: Any, **kwargs: Any) -> ChatSession:
        started.set()
        assert release.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(memory, "get_or_create_session", slow)
    change = {
        "add": lambda: session.add_items([{"role": "user", "content": "three"}]),
        "pop": session.pop_item,
        "clear": session.clear_session,
    }[operation]

    async def flow() -> bool:
        task = asyncio.ensure_future(change())
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.05)
        finished_early = task.done()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        return finished_early

    assert run(flow) is False  # it waited for the transaction, then raised
    monkeypatch.setattr(memory, "get_or_create_session", original)
    contents = [item["content"] for item in run(session.get_items)]
    assert contents == {"add": ["one", "two", "three"], "pop": ["one"], "clear": []}[operation]


@pytest.mark.parametrize("operation", ["add", "pop", "clear"])
def test_a_session_cleared_meanwhile_is_started_again(operation, monkeypatch):
    """Local-only mode: another process's clear_session deleted the row between our read
    and our write; the change is made again on a fresh session, not lost in an error."""
    session = make_session("raced")
    run(lambda: session.add_items([{"role": "user", "content": "old"}]))
    original = memory.get_or_create_session
    stale = ChatSession.objects.get(session_id="raced")
    ChatSession.objects.filter(pk=stale.pk).delete()  # the other process's clear
    calls = []

    def cleared_meanwhile(*args: Any, **kwargs: Any) -> ChatSession:
        calls.append(1)
        return stale if len(calls) == 1 else original(*args, **kwargs)

    monkeypatch.setattr(memory, "get_or_create_session", cleared_meanwhile)
    change = {
        "add": lambda: session.add_items([{"role": "user", "content": "new"}]),
        "pop": session.pop_item,
        "clear": session.clear_session,
    }[operation]
    assert run(change) is None
    monkeypatch.setattr(memory, "get_or_create_session", original)
    expected = {"add": [{"role": "user", "content": "new"}], "pop": [], "clear": []}
    assert run(session.get_items) == expected[operation]
    assert len(calls) == 2


@pytest.mark.django_db(transaction=True)
def test_safe_in_a_running_event_loop_without_async_unsafe(monkeypatch):
    monkeypatch.delenv("DJANGO_ALLOW_ASYNC_UNSAFE", raising=False)

    async def flow() -> list[Any]:
        session = make_session("loop")
        await session.add_items(ITEMS[:4])
        items = await session.get_items()
        await session.pop_item()
        await sync_to_async(connections.close_all)()
        return items

    assert asyncio.run(flow()) == ITEMS[:4]


def test_pop_of_an_item_never_sent_leaves_the_server_alone(
    settings, monkeypatch, django_capture_on_commit_callbacks, no_autopush
):
    settings.MOTORHEAD = {"URL": "http://127.0.0.1:9"}
    scheduled: list[Any] = []
    monkeypatch.setattr("motorhead_django.tasks.schedule", lambda task, pk: scheduled.append(task))
    session = make_session("unsent")
    with django_capture_on_commit_callbacks(execute=True):
        run(lambda: session.add_items(ITEMS[:2]))
        assert run(session.pop_item) == ITEMS[1]
    stored = ChatSession.objects.get(session_id="unsent")
    assert stored.sync_state == SyncState.PENDING and stored.drift == "" and scheduled == []
    ChatMessage.objects.filter(session=stored).update(sync_state="synced")
    with django_capture_on_commit_callbacks(execute=True):
        run(session.pop_item)
    stored.refresh_from_db()
    assert stored.sync_state == SyncState.DRIFTED and "pop_item" in stored.drift
    assert [task.name for task in scheduled] == ["motorhead_django.resync_session"]


def test_a_resync_that_meets_a_push_in_progress_is_tried_again(settings, monkeypatch):
    from motorhead_django import engine, tasks

    settings.MOTORHEAD = {"URL": "http://127.0.0.1:9"}
    monkeypatch.setattr(engine, "resync", lambda pk: engine.Result("resync", pk, busy=True))
    again: list[tuple[Any, tuple[Any, ...], Any]] = []
    monkeypatch.setattr(
        tasks, "_enqueue", lambda task, *args, eta=None: again.append((task, args, eta)) or True
    )
    tasks.resync_session(7)
    assert [(task, args) for task, args, _ in again] == [(tasks.resync_session, (7,))]
    assert again[0][2] is not None  # later, not in a loop


@pytest.mark.django_db(transaction=True)
def test_pop_of_a_pushed_item_rebuilds_the_servers_copy(settings, motorhead_server):
    settings.MOTORHEAD = {"URL": motorhead_server.url}
    session = make_session("pushed")

    async def flow(coro: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        try:
            return await coro()
        finally:
            await sync_to_async(connections.close_all)()

    run(lambda: flow(lambda: session.add_items(ITEMS[:3])))
    assert len(motorhead_server.stored_messages("pushed")) == 3
    assert run(lambda: flow(session.pop_item)) == ITEMS[2]
    # Eager Celery ran the resync once the pop committed: the server mirrors us again.
    stored = motorhead_server.stored_messages("pushed")
    assert [m["content"] for m in stored] == ["Be brief.", "Use tools."]
    assert ChatSession.objects.get(session_id="pushed").sync_state == SyncState.SYNCED
    run(lambda: flow(session.clear_session))
    assert motorhead_server.stored_messages("pushed") == []
    assert not ChatMessage.objects.filter(session__session_id="pushed").exists()
    run(lambda: flow(lambda: session.add_items([{"role": "user", "content": "new"}])))
    assert [m["content"] for m in motorhead_server.stored_messages("pushed")] == ["new"]


@pytest.mark.django_db(transaction=True)
def test_archive_on_clear_with_a_server_pushes_the_archive_and_replaces_the_session(
    settings, motorhead_server
):
    settings.MOTORHEAD = {"URL": motorhead_server.url}
    session = make_session("compacted", archive_on_clear=True)

    async def flow() -> None:
        try:
            await session.add_items(ITEMS[:4])
            await session.clear_session()
            await session.add_items([{"role": "user", "content": "summary of four items"}])
        finally:
            await sync_to_async(connections.close_all)()

    asyncio.run(flow())
    archive = ChatSession.objects.get(session_id__startswith="compacted~archived-")
    pushed = [m["content"] for m in motorhead_server.stored_messages(archive.session_id)]
    assert pushed == [item_role_and_text(item)[1] for item in ITEMS[:4]]
    assert [m["content"] for m in motorhead_server.stored_messages("compacted")] == [
        "summary of four items"
    ]
    assert isinstance(session, Session)  # the SDK's protocol, checked at run time


WRITER = textwrap.dedent(
    """
    import asyncio, pathlib, sys, time
    import django
    django.setup()
    from motorhead_django.openai_agents import DjangoSession

    async def main():
        session = DjangoSession("two-processes")
        await session.get_items(limit=1)  # connected: both start writing together
        # A barrier, not a clock: on a loaded machine one process may take seconds to start.
        ready = pathlib.Path(sys.argv[2])
        (ready / sys.argv[1]).touch()
        deadline = time.monotonic() + 60
        while len(list(ready.iterdir())) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for batch in range(BATCHES):
            await session.add_items(
                [{"role": "user", "content": f"{sys.argv[1]}-{batch}-{n}"} for n in range(5)]
            )

    asyncio.run(main())
    """
)
BATCHES = 40


@pytest.mark.django_db(transaction=True)
def test_concurrent_add_items_from_two_processes_keep_each_batch_whole_and_in_order(
    postgres, tmp_path
):
    memory.get_or_create_session("two-processes")
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "tests.worker_settings",
        "MOTORHEAD_TEST_DATABASE": connection.settings_dict["NAME"],
        "MOTORHEAD_TEST_SETTINGS": "{}",
        "MOTORHEAD_TEST_BROKER": "memory://",
        "PYTHONPATH": str(ROOT),
    }
    code = WRITER.replace("BATCHES", str(BATCHES))
    writers = [
        subprocess.Popen([sys.executable, "-c", code, name, str(tmp_path)], env=env, cwd=ROOT)
        for name in ("a", "b")
    ]
    assert [writer.wait(120) for writer in writers] == [0, 0]
    contents = [item["content"] for item in run(make_session("two-processes").get_items)]
    total = 2 * BATCHES * 5
    assert len(contents) == total and len(set(contents)) == total
    for first in range(0, total, 5):  # every batch whole, in its order
        name, batch, _ = contents[first].split("-")
        assert contents[first : first + 5] == [f"{name}-{batch}-{n}" for n in range(5)]
    for name in ("a", "b"):  # each process's batches in the order it wrote them
        mine = [c for c in contents if c.startswith(f"{name}-")]
        assert mine == [f"{name}-{b}-{n}" for b in range(BATCHES) for n in range(5)]
    writers_in_order = [c[0] for c in contents[::5]]
    switches = sum(
        1 for x, y in zip(writers_in_order, writers_in_order[1:], strict=False) if x != y
    )
    assert switches >= 2, "the two processes did not write at the same time"
    sequences = list(
        ChatMessage.objects.filter(session__session_id="two-processes")
        .order_by("sequence")
        .values_list("sequence", flat=True)
    )
    assert sequences == list(range(1, total + 1))


def test_redact_local_keeps_no_original_text_in_the_items(settings):
    settings.MOTORHEAD = {"REDACT": "motorhead_django.redact.default", "REDACT_LOCAL": True}
    session = make_session("redacted")
    said = {"role": "user", "content": [{"type": "input_text", "text": "I am ann@example.org"}]}
    call = {
        "type": "function_call",
        "call_id": "call_7",
        "name": "email",
        "arguments": '{"to": "ann@example.org"}',
    }
    output = {
        "type": "function_call_output",
        "call_id": "call_7",
        "output": "sent to ann@example.org",
    }
    run(lambda: session.add_items([said, call, output]))
    stored = ChatMessage.objects.filter(session__session_id="redacted").order_by("sequence")
    assert not any("ann@example.org" in json.dumps(m.item) + m.content for m in stored)
    items = run(session.get_items)
    assert items[0]["content"][0]["text"] == "I am [email]"
    assert items[1]["arguments"] == '{"to": "[email]"}'
    # The structure the SDK needs is intact: types, names, the call and its output still pair.
    assert [i.get("type") for i in items] == [None, "function_call", "function_call_output"]
    assert items[1]["call_id"] == items[2]["call_id"] == "call_7"
