"""The LangGraph checkpointer: LangGraph's conformance suite, real graphs, the mirror."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, TypedDict
from uuid import uuid4

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

pytest.importorskip("langgraph.checkpoint.conformance", reason="install the langgraph extra")

from django.contrib.auth.models import AnonymousUser  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402
from langgraph.channels.delta import DeltaChannel  # noqa: E402
from langgraph.checkpoint.base import ERROR, BaseCheckpointSaver  # noqa: E402
from langgraph.checkpoint.conformance import checkpointer_test, validate  # noqa: E402
from langgraph.checkpoint.conformance.capabilities import Capability  # noqa: E402
from langgraph.graph import START, MessagesState, StateGraph  # noqa: E402
from langgraph.types import Command, interrupt  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from motorhead_django import memory  # noqa: E402
from motorhead_django.exceptions import MotorheadValidationError  # noqa: E402
from motorhead_django.langchain import to_langchain  # noqa: E402
from motorhead_django.langgraph import DjangoSaver  # noqa: E402
from motorhead_django.models import (  # noqa: E402
    ApiKey,
    ChatSession,
    LangGraphBlob,
    LangGraphCheckpoint,
    LangGraphWrite,
)

# sync_to_async and the worker threads below open their own connections: the
# data has to be committed to be seen there (and the in-memory SQLite is shared).
pytestmark = pytest.mark.django_db(transaction=True)


class SyncDrivenSaver(DjangoSaver):
    """The conformance suite calls the async API: here each async method runs the
    *sync* one in a worker thread, so the same suite checks the sync API."""

    def __init__(self, worker: ThreadPoolExecutor) -> None:
        super().__init__()
        self.worker = worker

    async def _sync(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            self.worker, lambda: method(*args, **kwargs)
        )

    async def aget_tuple(self, config):
        return await self._sync(self.get_tuple, config)

    async def alist(self, config, *, filter=None, before=None, limit=None) -> AsyncIterator:
        listed = await self._sync(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in listed:
            yield item

    async def aput(self, config, checkpoint, metadata, new_versions):
        return await self._sync(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config, writes, task_id, task_path=""):
        await self._sync(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id):
        await self._sync(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids):
        await self._sync(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id, target_thread_id):
        await self._sync(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids, *, strategy="keep_latest"):
        await self._sync(self.prune, thread_ids, strategy=strategy)


def run_conformance(make_saver: Callable[[], DjangoSaver]):
    @checkpointer_test(name=f"DjangoSaver-{uuid4()}")
    async def factory():
        yield make_saver()

    async def flow():
        try:
            return await validate(factory)
        finally:
            await sync_to_async(connections.close_all)()

    return asyncio.run(flow())


def assert_all_passed(report) -> None:
    failures = {name: result.failures for name, result in report.results.items() if result.failures}
    assert not failures, failures
    # Every capability, the optional ones included, was detected and ran.
    assert {name for name, result in report.results.items() if result.passed} == {
        capability.value for capability in Capability
    }
    assert report.passed_all_base()


def test_conformance_through_the_async_api(monkeypatch):
    monkeypatch.delenv("DJANGO_ALLOW_ASYNC_UNSAFE", raising=False)
    report = run_conformance(DjangoSaver)
    assert_all_passed(report)
    passed = sum(result.tests_passed for result in report.results.values())
    assert passed >= 81  # the 81 tests of langgraph-checkpoint-conformance 0.0.2
    print(f"\nconformance (async API): {passed} passed")


def test_conformance_of_a_saver_with_an_owner(monkeypatch, django_user_model):
    monkeypatch.delenv("DJANGO_ALLOW_ASYNC_UNSAFE", raising=False)
    owner = django_user_model.objects.create_user("lg-conformance")
    assert_all_passed(run_conformance(lambda: DjangoSaver(owner=owner)))
    assert LangGraphCheckpoint.objects.filter(owner__isnull=True).count() == 0


def test_conformance_through_the_sync_api():
    worker = ThreadPoolExecutor(max_workers=1)
    try:
        report = run_conformance(lambda: SyncDrivenSaver(worker))
    finally:
        worker.submit(connections.close_all).result()
        worker.shutdown()
    assert_all_passed(report)
    passed = sum(result.tests_passed for result in report.results.values())
    print(f"\nconformance (sync API): {passed} passed")


# Real graphs, no LLM: a node that answers with an AIMessage.


def reply(state: MessagesState) -> dict:
    asked = [m for m in state["messages"] if m.type == "human"]
    return {"messages": [AIMessage(f"answer {len(asked)} to {asked[-1].content}")]}


def chat_graph(saver: DjangoSaver):
    builder = StateGraph(MessagesState)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    return builder.compile(checkpointer=saver)


def mirrored(thread_id: str) -> list[tuple[str, str]]:
    session = ChatSession.objects.filter(session_id=thread_id).order_by("pk").first()
    return [(m.role, m.content) for m in memory.history(session)]


def test_two_turns_on_one_thread_sync():
    graph = chat_graph(DjangoSaver())
    config = {"configurable": {"thread_id": "lg-sync"}}
    graph.invoke({"messages": [HumanMessage("hi")]}, config)
    state = graph.invoke({"messages": [HumanMessage("again")]}, config)
    # The second turn saw the first: the node counted two questions.
    assert [m.content for m in state["messages"]] == [
        "hi",
        "answer 1 to hi",
        "again",
        "answer 2 to again",
    ]
    assert mirrored("lg-sync") == [
        ("Human", "hi"),
        ("AI", "answer 1 to hi"),
        ("Human", "again"),
        ("AI", "answer 2 to again"),
    ]


def test_two_turns_on_one_thread_async(monkeypatch):
    monkeypatch.delenv("DJANGO_ALLOW_ASYNC_UNSAFE", raising=False)
    assert "DJANGO_ALLOW_ASYNC_UNSAFE" not in os.environ

    async def flow() -> list[str]:
        try:
            graph = chat_graph(DjangoSaver())
            config = {"configurable": {"thread_id": "lg-async"}}
            await graph.ainvoke({"messages": [HumanMessage("one")]}, config)
            state = await graph.ainvoke({"messages": [HumanMessage("two")]}, config)
            return [m.content for m in state["messages"]]
        finally:
            await sync_to_async(connections.close_all)()

    assert asyncio.run(flow()) == ["one", "answer 1 to one", "two", "answer 2 to two"]
    assert [role for role, _ in mirrored("lg-async")] == ["Human", "AI", "Human", "AI"]


def test_interrupt_and_resume_on_a_new_saver():
    def approve(state: MessagesState) -> dict:
        verdict = interrupt({"question": "send it?"})
        return {"messages": [AIMessage(f"verdict: {verdict}")]}

    def build(saver: DjangoSaver):
        builder = StateGraph(MessagesState)
        builder.add_node("approve", approve)
        builder.add_edge(START, "approve")
        return builder.compile(checkpointer=saver)

    config = {"configurable": {"thread_id": "lg-interrupt"}}
    first = build(DjangoSaver()).invoke({"messages": [HumanMessage("draft")]}, config)
    assert first["__interrupt__"][0].value == {"question": "send it?"}

    # Another process: a new saver and a new graph find the interrupted state.
    graph = build(DjangoSaver())
    paused = graph.get_state(config)
    assert paused.next == ("approve",)
    assert paused.tasks[0].interrupts[0].value == {"question": "send it?"}
    done = graph.invoke(Command(resume="yes"), config)
    assert [m.content for m in done["messages"]] == ["draft", "verdict: yes"]
    assert graph.get_state(config).next == ()
    assert mirrored("lg-interrupt") == [("Human", "draft"), ("AI", "verdict: yes")]


def test_state_history_replay_and_fork():
    graph = chat_graph(DjangoSaver())
    config = {"configurable": {"thread_id": "lg-history"}}
    graph.invoke({"messages": [HumanMessage("first")]}, config)
    graph.invoke({"messages": [HumanMessage("second")]}, config)
    history = list(graph.get_state_history(config))
    # Newest first: each turn wrote an input, a loop and a reply checkpoint.
    assert [len(snapshot.values.get("messages", [])) for snapshot in history] == [
        4,
        3,
        2,
        2,
        1,
        0,
    ]
    assert history[0].values == graph.get_state(config).values
    # Replay from the checkpoint after the first turn, with another question.
    after_first = history[3]
    assert after_first.next == ()
    forked = graph.invoke({"messages": [HumanMessage("other")]}, after_first.config)
    assert [m.content for m in forked["messages"]] == [
        "first",
        "answer 1 to first",
        "other",
        "answer 2 to other",
    ]
    assert graph.get_state(config).values["messages"][-1].content == "answer 2 to other"
    # The mirror is the record: each message once, in the order it was written.
    assert [content for _, content in mirrored("lg-history")] == [
        "first",
        "answer 1 to first",
        "second",
        "answer 2 to second",
        "other",
        "answer 2 to other",
    ]


def test_delete_thread_removes_checkpoints_and_mirror_then_starts_clean():
    graph = chat_graph(DjangoSaver())
    config = {"configurable": {"thread_id": "lg-delete"}}
    graph.invoke({"messages": [HumanMessage("forget me")]}, config)
    graph.invoke(
        {"messages": [HumanMessage("left alone")]}, {"configurable": {"thread_id": "keep"}}
    )
    assert mirrored("lg-delete") == [("Human", "forget me"), ("AI", "answer 1 to forget me")]

    graph.checkpointer.delete_thread("lg-delete")

    assert not ChatSession.objects.filter(session_id="lg-delete").exists()
    for model in (LangGraphCheckpoint, LangGraphBlob, LangGraphWrite):
        assert not model.objects.filter(thread_id="lg-delete").exists()
    assert graph.get_state(config).values == {}
    assert len(mirrored("keep")) == 2
    graph.invoke({"messages": [HumanMessage("fresh")]}, config)
    assert mirrored("lg-delete") == [("Human", "fresh"), ("AI", "answer 1 to fresh")]


def test_pending_writes_come_back_in_writes_sort_key_order():
    saver = DjangoSaver()
    config = {"configurable": {"thread_id": "lg-writes", "checkpoint_ns": ""}}
    checkpoint = {
        "v": 1,
        "id": "1ef00000-0000-6000-8000-000000000001",
        "ts": "2026-01-01T00:00:00+00:00",
        "channel_values": {},
        "channel_versions": {},
        "versions_seen": {},
        "updated_channels": None,
    }
    stored = saver.put(config, checkpoint, {"source": "loop", "step": 0}, {})
    saver.put_writes(stored, [("b", 2), ("a", 1)], "task-z", task_path="~1")
    saver.put_writes(stored, [("c", 3)], "task-a", task_path="~0")
    saver.put_writes(stored, [("input", "x")], "task-m", task_path="")
    writes = DjangoSaver().get_tuple(stored).pending_writes
    assert writes == [
        ("task-m", "input", "x"),
        ("task-a", "c", 3),
        ("task-z", "b", 2),
        ("task-z", "a", 1),
    ]


@pytest.mark.parametrize("owned", [False, True])
def test_a_special_write_is_replaced_a_regular_one_kept(owned, django_user_model):
    owner = django_user_model.objects.create_user("lg-writer") if owned else None
    saver = DjangoSaver(owner=owner)
    config = {"configurable": {"thread_id": "lg-special", "checkpoint_ns": ""}}
    checkpoint = {
        "v": 1,
        "id": "1ef00000-0000-6000-8000-000000000001",
        "ts": "2026-01-01T00:00:00+00:00",
        "channel_values": {},
        "channel_versions": {},
        "versions_seen": {},
        "updated_channels": None,
    }
    stored = saver.put(config, checkpoint, {"source": "loop", "step": 0}, {})
    saver.put_writes(stored, [("a", "first"), (ERROR, "boom 1")], "task")
    saver.put_writes(stored, [("a", "second"), (ERROR, "boom 2")], "task")
    assert saver.get_tuple(stored).pending_writes == [
        ("task", ERROR, "boom 2"),  # errors and interrupts: the last one wins
        ("task", "a", "first"),  # a task's regular writes are kept as first written
    ]
    assert LangGraphWrite.objects.filter(owner=owner).count() == 2


def test_owner_and_tool_messages_in_the_mirror(django_user_model):
    owner = django_user_model.objects.create_user("lg-owner")
    saver = DjangoSaver(owner=owner)
    config = {"configurable": {"thread_id": "lg-owned", "checkpoint_ns": ""}}
    messages = [
        HumanMessage("weather?", id="m1"),
        AIMessage(
            "", id="m2", tool_calls=[{"name": "weather", "args": {"city": "Oslo"}, "id": "c1"}]
        ),
        ToolMessage("rain", tool_call_id="c", id="m3"),
        AIMessage([{"type": "text", "text": "It rains."}], id="m4"),
    ]
    checkpoint = {
        "v": 1,
        "id": "1ef00000-0000-6000-8000-000000000002",
        "ts": "2026-01-01T00:00:00+00:00",
        "channel_values": {"messages": messages},
        "channel_versions": {"messages": 1},
        "versions_seen": {},
        "updated_channels": None,
    }
    saver.put(config, checkpoint, {"source": "loop", "step": 0}, {"messages": 1})
    # The same messages again (a later checkpoint) are not mirrored twice.
    saver.put(
        config, {**checkpoint, "id": "1ef00000-0000-6000-8000-000000000003"}, {}, {"messages": 2}
    )
    session = ChatSession.objects.get(session_id="lg-owned")
    assert session.owner == owner
    assert mirrored("lg-owned") == [
        ("Human", "weather?"),
        ("AI", 'weather({"city": "Oslo"})'),
        ("Tool", "rain"),
        ("AI", "It rains."),
    ]
    # Each mirrored message keeps the message itself: read back equal.
    assert [to_langchain(row) for row in memory.history(session)] == messages
    # Thread ids are scoped per owner: another user's saver writes a thread (and a
    # mirror) of its own under the same id, and its delete never reaches this one.
    stranger_user = django_user_model.objects.create_user("lg-stranger")
    stranger = DjangoSaver(owner=stranger_user)
    assert stranger.get_tuple(config) is None
    stranger.put(
        config, {**checkpoint, "id": "1ef00000-0000-6000-8000-000000000009"}, {}, {"messages": 3}
    )
    assert ChatSession.objects.get(session_id="lg-owned", owner=stranger_user).messages.count() == 4
    stranger.delete_thread("lg-owned")
    assert not ChatSession.objects.filter(owner=stranger_user).exists()
    assert len(mirrored("lg-owned")) == 4
    assert saver.get_tuple(config).checkpoint["id"] == "1ef00000-0000-6000-8000-000000000003"
    saver.delete_thread("lg-owned")
    assert not LangGraphCheckpoint.objects.filter(thread_id="lg-owned").exists()


def test_threads_are_scoped_per_owner(django_user_model):
    ann = django_user_model.objects.create_user("lg-ann")
    bob = django_user_model.objects.create_user("lg-bob")
    config = {"configurable": {"thread_id": "plans"}}
    graphs = {who: chat_graph(DjangoSaver(owner=who)) for who in (ann, bob, None)}
    graphs[ann].invoke({"messages": [HumanMessage("ann's secret")]}, config)
    graphs[ann].invoke({"messages": [HumanMessage("ann again")]}, config)
    graphs[bob].invoke({"messages": [HumanMessage("bob's")]}, config)
    # One thread id, three threads: each saver resumes only its own owner's.
    assert graphs[bob].get_state(config).values["messages"][-1].content == "answer 1 to bob's"
    assert graphs[None].get_state(config).values == {}
    assert len(graphs[ann].get_state(config).values["messages"]) == 4
    # Listing every thread lists the owner's only.
    listed = list(DjangoSaver(owner=bob).list(None))
    assert len(listed) == LangGraphCheckpoint.objects.filter(owner=bob).count() == 3
    said = {m.content for t in listed for m in t.checkpoint["channel_values"].get("messages", [])}
    assert said == {"bob's", "answer 1 to bob's"}
    assert list(DjangoSaver().list(None)) == []
    # Copy, prune and run deletes stay within the owner's threads.
    DjangoSaver(owner=bob).copy_thread("plans", "copy")
    assert DjangoSaver(owner=ann).get_tuple({"configurable": {"thread_id": "copy"}}) is None
    assert LangGraphCheckpoint.objects.filter(thread_id="copy", owner=bob).exists()
    DjangoSaver(owner=bob).prune(["plans"], strategy="delete")
    run_ids = set(LangGraphCheckpoint.objects.filter(owner=ann).values_list("run_id", flat=True))
    DjangoSaver(owner=bob).delete_for_runs(list(run_ids))
    assert len(graphs[ann].get_state(config).values["messages"]) == 4
    assert graphs[bob].get_state(config).values == {}
    # Each mirror belongs to its owner.
    assert ChatSession.objects.get(session_id="plans", owner=ann).messages.count() == 4
    assert ChatSession.objects.get(session_id="plans", owner=bob).messages.count() == 2
    # An anonymous request.user is refused up front, not a TypeError in the ORM.
    with pytest.raises(MotorheadValidationError):
        DjangoSaver(owner=AnonymousUser())


def test_a_mirrored_thread_is_reached_through_the_apis_by_its_owner_only(client, django_user_model):
    ann = django_user_model.objects.create_user("lg-api-ann")
    bob = django_user_model.objects.create_user("lg-api-bob")
    chat_graph(DjangoSaver(owner=ann)).invoke(
        {"messages": [HumanMessage("private plans")]}, {"configurable": {"thread_id": "t-api"}}
    )
    session = ChatSession.objects.get(session_id="t-api")
    assert session.owner == ann
    url = f"/api/sessions/{session.pk}/messages/"
    rest = APIClient()
    rest.force_authenticate(ann)
    listed = rest.get(url)
    assert listed.status_code == 200
    assert [m["content"] for m in listed.json()["results"]] == [
        "private plans",
        "answer 1 to private plans",
    ]
    rest.force_authenticate(bob)
    assert rest.get(url).status_code == 404
    assert rest.get(f"/api/sessions/{session.pk}/").status_code == 404
    # The Motorhead-compatible routes: the owner's key reads it, another key an empty session.
    for user, expected in ((ann, ["answer 1 to private plans", "private plans"]), (bob, [])):
        key = ApiKey.issue(user, "key")[1]
        response = client.get("/motorhead/sessions/t-api/memory", HTTP_X_METAL_API_KEY=key)
        assert response.status_code == 200
        assert [m["content"] for m in response.json()["messages"]] == expected
    assert ChatSession.objects.get(session_id="t-api", owner=ann).messages.count() == 2


def test_admin_shows_checkpoints_read_only(admin_client):
    chat_graph(DjangoSaver()).invoke(
        {"messages": [HumanMessage("in the admin")]}, {"configurable": {"thread_id": "lg-admin"}}
    )
    row = LangGraphCheckpoint.objects.filter(thread_id="lg-admin").first()
    base = "/admin/motorhead_django/langgraphcheckpoint/"
    listing = admin_client.get(base, {"q": "lg-admin"})
    assert listing.status_code == 200 and row.checkpoint_id in listing.content.decode()
    page = admin_client.get(f"{base}{row.pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content  # no form to change it
    assert admin_client.get(f"{base}add/").status_code == 403
    for model in ("langgraphblob", "langgraphwrite"):
        assert admin_client.get(f"/admin/motorhead_django/{model}/").status_code == 200
    assert admin_client.post(f"{base}{row.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not LangGraphCheckpoint.objects.filter(pk=row.pk).exists()


def test_roles_outside_allowed_roles_are_left_out_of_the_mirror(settings):
    settings.MOTORHEAD = {"ALLOWED_ROLES": ["Human", "AI"]}
    saver = DjangoSaver()
    config = {"configurable": {"thread_id": "lg-roles", "checkpoint_ns": ""}}
    messages = [
        HumanMessage("q", id="h"),
        ToolMessage("tool output", tool_call_id="c", id="t"),
        AIMessage("a", id="a"),
    ]
    checkpoint = {
        "v": 1,
        "id": "1ef00000-0000-6000-8000-000000000004",
        "ts": "2026-01-01T00:00:00+00:00",
        "channel_values": {"messages": messages},
        "channel_versions": {"messages": 1},
        "versions_seen": {},
        "updated_channels": None,
    }
    saver.put(config, checkpoint, {"source": "loop", "step": 0}, {"messages": 1})
    assert mirrored("lg-roles") == [("Human", "q"), ("AI", "a")]
    # The checkpoint itself keeps every message.
    assert saver.get_tuple(config).checkpoint["channel_values"]["messages"] == messages


def test_a_thread_id_that_is_no_session_id_still_checkpoints(caplog):
    graph = chat_graph(DjangoSaver())
    config = {"configurable": {"thread_id": "tab\there"}}
    state = graph.invoke({"messages": [HumanMessage("hi")]}, config)
    assert [m.content for m in state["messages"]] == ["hi", "answer 1 to hi"]
    assert not ChatSession.objects.exists()
    assert "not mirrored" in caplog.text


def extend(state: list, writes: list) -> list:
    return [*state, *(item for write in writes for item in write)]


class DeltaState(TypedDict):
    # LangGraph resolves this annotation at run time: hence a module-level class.
    items: Annotated[list, DeltaChannel(extend, snapshot_frequency=3)]


def test_prune_keeps_what_a_delta_channel_is_rebuilt_from():
    builder = StateGraph(DeltaState)
    builder.add_node("count", lambda state: {"items": [len(state["items"])]})
    builder.add_edge(START, "count")
    saver = DjangoSaver()
    config = {"configurable": {"thread_id": "lg-delta"}}
    for turn in range(5):
        builder.compile(checkpointer=saver).invoke({"items": [f"in{turn}"]}, config)
    graph = builder.compile(checkpointer=saver)
    before = graph.get_state(config).values
    assert before == {"items": ["in0", 1, "in1", 3, "in2", 5, "in3", 7, "in4", 9]}
    # The saver's batched walk finds what the base class's tuple-by-tuple walk finds.
    replayed = 0
    for snapshot in graph.get_state_history(config):
        ours = saver.get_delta_channel_history(config=snapshot.config, channels=["items", "x"])
        base = BaseCheckpointSaver.get_delta_channel_history(
            saver, config=snapshot.config, channels=["items", "x"]
        )
        assert ours == base
        replayed += bool(ours["items"]["writes"] and "seed" in ours["items"])
    assert replayed >= 5  # checkpoints rebuilt from a snapshot plus writes
    # The newest checkpoint holds no snapshot of "items": its parent (a snapshot) stays too.
    saver.prune(["lg-delta"], strategy="keep_latest")
    assert LangGraphCheckpoint.objects.filter(thread_id="lg-delta").count() == 2
    assert builder.compile(checkpointer=DjangoSaver()).get_state(config).values == before


def test_delete_thread_deletes_the_conversation_on_the_server_too(upstream):
    upstream.preload("lg-remote", [("Human", "said elsewhere")])
    graph = chat_graph(DjangoSaver())
    config = {"configurable": {"thread_id": "lg-remote"}}
    graph.invoke({"messages": [HumanMessage("hi")]}, config)
    assert "lg-remote" in upstream.sessions()

    graph.checkpointer.delete_thread("lg-remote")  # DELETE_REMOTE is on by default

    assert [r.path for r in upstream.requests_for("DELETE")] == ["/sessions/lg-remote/memory"]
    assert "lg-remote" not in upstream.sessions()
    assert not ChatSession.objects.filter(session_id="lg-remote").exists()
    graph.invoke({"messages": [HumanMessage("again")]}, config)
    assert mirrored("lg-remote") == [("Human", "again"), ("AI", "answer 1 to again")]


def test_the_async_api_keeps_one_connection(monkeypatch):
    from django.db.backends.signals import connection_created

    opened: list[str] = []

    def count(sender, connection, **kwargs):
        opened.append(connection.alias)

    connection_created.connect(count)

    async def flow() -> None:
        try:
            graph = chat_graph(DjangoSaver())
            config = {"configurable": {"thread_id": "lg-one-connection"}}
            for turn in range(3):
                await graph.ainvoke({"messages": [HumanMessage(f"turn {turn}")]}, config)
        finally:
            await sync_to_async(connections.close_all)()

    try:
        asyncio.run(flow())
    finally:
        connection_created.disconnect(count)
    # sync_to_async runs every call in one thread, on one connection kept open (none
    # on SQLite when an earlier test left that thread's in-memory connection open).
    assert opened in (["default"], [])
    assert len(mirrored("lg-one-connection")) == 6


def test_the_sync_api_leaves_no_connection_open_in_langgraphs_threads(postgres):
    from django.db import connection

    def sessions() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            )
            return cursor.fetchone()[0]

    before = sessions()
    graph = chat_graph(DjangoSaver())
    for turn in range(3):
        graph.invoke(
            {"messages": [HumanMessage(f"turn {turn}")]}, {"configurable": {"thread_id": "lg-pg"}}
        )
    # Another test's background thread may still be closing its connection: wait for the
    # count to settle rather than read it once (a leak stays, and fails after the wait).
    deadline = time.monotonic() + 10
    while sessions() > before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sessions() <= before


def test_text_no_column_holds_is_cleaned_in_the_mirror_not_in_the_checkpoint():
    saver = DjangoSaver()
    config = {"configurable": {"thread_id": "lg-nul", "checkpoint_ns": ""}}
    messages = [HumanMessage("a\x00b", id="id\x00"), AIMessage("c \ud800", id="id\ud800")]
    checkpoint = {
        "v": 1,
        "id": "1ef00000-0000-6000-8000-000000000005",
        "ts": "2026-01-01T00:00:00+00:00",
        "channel_values": {"messages": messages},
        "channel_versions": {"messages": 1},
        "versions_seen": {},
        "updated_channels": None,
    }
    saver.put(config, checkpoint, {"source": "loop", "step": 0}, {"messages": 1})
    assert mirrored("lg-nul") == [("Human", "ab"), ("AI", "c ?")]
    # The checkpoint (bytes) keeps the NUL; the lone surrogate is the serializer's to handle.
    assert saver.get_tuple(config).checkpoint["channel_values"]["messages"][0] == messages[0]


# -- verified erasure reaches the checkpoints (their blobs hold the whole conversation) --


def thread_rows(thread_id: str, owner=None) -> int:
    return sum(
        model.objects.filter(thread_id=thread_id, owner=owner).count()
        for model in (LangGraphCheckpoint, LangGraphBlob, LangGraphWrite)
    )


def test_erasing_a_mirrored_session_erases_its_threads_checkpoints(django_user_model):
    import io
    import json

    from django.core.management import call_command

    ann = django_user_model.objects.create_user("ann")
    bob = django_user_model.objects.create_user("bob")
    ours, theirs = chat_graph(DjangoSaver(owner=ann)), chat_graph(DjangoSaver(owner=bob))
    for graph in (ours, theirs):
        graph.invoke({"messages": [HumanMessage("secret")]}, {"configurable": {"thread_id": "t"}})
    ours.invoke({"messages": [HumanMessage("other")]}, {"configurable": {"thread_id": "t2"}})
    checkpoints = LangGraphCheckpoint.objects.filter(owner=ann, thread_id="t").count()
    assert checkpoints and thread_rows("t", ann) > checkpoints  # blobs and writes too

    session = ChatSession.objects.get(owner=ann, session_id="t")
    out = io.StringIO()
    call_command("motorhead_erase", "--session", str(session.pk), stdout=out)

    assert json.loads(out.getvalue())["counts"]["checkpoints"] == checkpoints
    assert thread_rows("t", ann) == 0
    assert ours.get_state({"configurable": {"thread_id": "t"}}).values == {}
    assert thread_rows("t2", ann) and thread_rows("t", bob)  # another thread, another owner


def test_erasing_a_user_erases_every_thread_of_theirs_even_without_a_session(django_user_model):
    from motorhead_django import governance

    ann = django_user_model.objects.create_user("ann")
    bob = django_user_model.objects.create_user("bob")
    graph = chat_graph(DjangoSaver(owner=ann))
    for thread in ("a", "b"):
        graph.invoke({"messages": [HumanMessage("hi")]}, {"configurable": {"thread_id": thread}})
    chat_graph(DjangoSaver(owner=bob)).invoke(
        {"messages": [HumanMessage("hi")]}, {"configurable": {"thread_id": "a"}}
    )
    # The mirror of "b" was deleted alone: its checkpoints still hold the conversation.
    memory.delete_session(ChatSession.objects.get(owner=ann, session_id="b"), remote=False)
    expected = LangGraphCheckpoint.objects.filter(owner=ann).count()

    receipt = governance.erase_user(ann).receipt

    assert receipt.counts["checkpoints"] == expected and receipt.counts["sessions"] == 1
    assert thread_rows("a", ann) == thread_rows("b", ann) == 0
    assert thread_rows("a", bob)


def test_a_held_user_keeps_their_threads(django_user_model):
    from motorhead_django import governance
    from motorhead_django.exceptions import MotorheadLegalHoldError

    ann = django_user_model.objects.create_user("ann")
    chat_graph(DjangoSaver(owner=ann)).invoke(
        {"messages": [HumanMessage("hi")]}, {"configurable": {"thread_id": "a"}}
    )
    governance.hold_owner(ann)
    with pytest.raises(MotorheadLegalHoldError):
        governance.erase_user(ann)
    assert thread_rows("a", ann)
