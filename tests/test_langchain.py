"""The LangChain chat message history backed by the app's models."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

pytest.importorskip("langchain_core", reason="install the langchain extra")

from langchain_core.language_models.fake_chat_models import FakeListChatModel  # noqa: E402
from langchain_core.messages import (  # noqa: E402
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    ToolMessage,
)
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder  # noqa: E402
from langchain_core.runnables.history import RunnableWithMessageHistory  # noqa: E402

from motorhead_django import memory  # noqa: E402
from motorhead_django.exceptions import MotorheadValidationError  # noqa: E402
from motorhead_django.langchain import DjangoChatMessageHistory, readable_text  # noqa: E402
from motorhead_django.models import ChatSession  # noqa: E402

pytestmark = pytest.mark.django_db


def test_messages_round_trip_with_their_types():
    history = DjangoChatMessageHistory("lc-1")
    sent = [
        SystemMessage("Be brief."),
        HumanMessage("What is 2 + 2?"),
        AIMessage("4"),
        ChatMessage(role="tool", content="calculator: 4"),
    ]
    history.add_messages(sent)
    again = DjangoChatMessageHistory("lc-1").messages
    assert [(type(m), m.content) for m in again] == [(type(m), m.content) for m in sent]
    assert again[3].role == "tool"
    stored = memory.history(ChatSession.objects.get(session_id="lc-1"))
    # Stored under the roles Motorhead's own clients use.
    assert [m.role for m in stored] == ["System", "Human", "AI", "tool"]


def test_roles_written_by_other_clients_map_to_types():
    session = memory.get_or_create_session("lc-2")
    memory.append_messages(session, [("user", "hi"), ("assistant", "hello"), ("Critic", "meh")])
    messages = DjangoChatMessageHistory("lc-2").messages
    assert [type(m) for m in messages] == [HumanMessage, AIMessage, ChatMessage]
    assert messages[2].role == "Critic"


def test_add_messages_is_one_transaction_and_one_push(
    settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.MOTORHEAD = {"URL": "http://127.0.0.1:9"}
    scheduled: list[int] = []
    monkeypatch.setattr("motorhead_django.tasks.schedule_push", scheduled.append)
    history = DjangoChatMessageHistory("lc-3")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        history.add_messages([HumanMessage("q"), AIMessage("a")])
    assert len(callbacks) == 1 and scheduled == [history.session.pk]


def test_a_window_is_one_query_however_long_the_history(django_assert_num_queries):
    session = memory.get_or_create_session("lc-4")
    for start in range(0, 300, 100):
        memory.append_messages(session, [("Human", f"m{n}") for n in range(start, start + 100)])
    history = DjangoChatMessageHistory("lc-4", window=12)
    history.session  # noqa: B018  (the session is fetched once, on first use)
    with django_assert_num_queries(1):
        window = history.messages
    assert [m.content for m in window] == [f"m{n}" for n in range(288, 300)]


def test_unstorable_messages_are_refused_and_nothing_is_written():
    history = DjangoChatMessageHistory("lc-5")
    for bad in (
        HumanMessage("nul \x00"),
        AIMessage("x", additional_kwargs={"when": float("inf")}),
        ToolMessage("out", tool_call_id="c", artifact=object()),
    ):
        with pytest.raises(MotorheadValidationError) as caught:
            history.add_messages([HumanMessage("ok"), bad])
        assert any(field.startswith("messages[1]") for field in caught.value.errors)
    assert history.messages == []


@pytest.mark.django_db(transaction=True)
def test_async_methods():
    async def flow() -> list:
        history = DjangoChatMessageHistory("lc-async")
        await history.aadd_messages([HumanMessage("async?"), AIMessage("yes")])
        messages = await history.aget_messages()
        # sync_to_async ran the queries in its own thread: close that thread's connection,
        # or the test database cannot be dropped at the end of the run.
        await sync_to_async(connections.close_all)()
        return messages

    assert [m.content for m in asyncio.run(flow())] == ["async?", "yes"]


# LangChain 1.x deprecates RunnableWithMessageHistory for LangGraph; it still drives any
# BaseChatMessageHistory, which is what this checks.
@pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated")
@pytest.mark.django_db(transaction=True)
def test_a_chain_keeps_its_memory_in_django_and_motorhead(settings, motorhead_server):
    """RunnableWithMessageHistory over our history; the sync mirrors it to the server."""
    settings.MOTORHEAD = {"URL": motorhead_server.url}
    model = FakeListChatModel(responses=["Hello, Ada.", "Your name is Ada."])
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You remember names."), MessagesPlaceholder("history"), ("human", "{input}")]
    )
    chain = RunnableWithMessageHistory(
        prompt | model,
        lambda session_id: DjangoChatMessageHistory(session_id),
        input_messages_key="input",
        history_messages_key="history",
    )
    config = {"configurable": {"session_id": "ada"}}
    chain.invoke({"input": "I am Ada."}, config=config)
    answer = chain.invoke({"input": "What is my name?"}, config=config)
    assert answer.content == "Your name is Ada."
    expected = [
        ("Human", "I am Ada."),
        ("AI", "Hello, Ada."),
        ("Human", "What is my name?"),
        ("AI", "Your name is Ada."),
    ]
    session = ChatSession.objects.get(session_id="ada")
    assert [(m.role, m.content) for m in memory.history(session)] == expected
    # Eager Celery (the tests' default) pushed each turn once its write committed.
    stored = motorhead_server.stored_messages("ada")
    assert [(m["role"], m["content"]) for m in stored] == expected


def test_clear_in_local_only_mode_deletes_the_conversation():
    history = DjangoChatMessageHistory("lc-clear")
    history.add_messages([HumanMessage("forget me")])
    history.clear()
    assert not ChatSession.objects.filter(session_id="lc-clear").exists()
    assert history.messages == []  # a fresh, empty session


@pytest.mark.django_db(transaction=True)
def test_clear_deletes_on_the_server_too(settings, motorhead_server):
    settings.MOTORHEAD = {"URL": motorhead_server.url}
    history = DjangoChatMessageHistory("lc-gone")
    history.add_messages([HumanMessage("hello"), AIMessage("hi")])
    assert len(motorhead_server.stored_messages("lc-gone")) == 2
    history.clear()  # eager Celery: the server's DELETE runs once the tombstone commits
    assert motorhead_server.stored_messages("lc-gone") == []
    assert not ChatSession.objects.filter(session_id="lc-gone").exists()
    history.add_messages([HumanMessage("a new start")])
    assert [m.content for m in history.messages] == ["a new start"]


IMAGE = "data:image/png;base64,iVBORw0KGgo="

# Every message type, with every field that must survive.
EVERY_KIND: list[BaseMessage] = [
    SystemMessage("Be brief.", id="m-sys", additional_kwargs={"cache": True}),
    HumanMessage(
        [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": IMAGE, "detail": "low"}},
            {
                "type": "image",
                "source_type": "base64",
                "data": "iVBORw0KGgo=",
                "mime_type": "image/png",
            },
        ],
        id="m-human",
        name="ada",
    ),
    AIMessage(
        "",
        id="m-ai",
        name="helper",
        tool_calls=[
            {"name": "lookup", "args": {"q": "cat", "n": 1}, "id": "call-1", "type": "tool_call"},
            {"name": "count", "args": {}, "id": "call-2", "type": "tool_call"},
        ],
        invalid_tool_calls=[
            {
                "name": "bad",
                "args": "{oops",
                "id": "call-3",
                "error": "not JSON",
                "type": "invalid_tool_call",
            }
        ],
        additional_kwargs={"refusal": None, "nested": {"list": [1, 2.5, None, True]}},
        response_metadata={"model_name": "fake-1", "finish_reason": "tool_calls", "logprobs": None},
        usage_metadata={"input_tokens": 10, "output_tokens": 3, "total_tokens": 13},
    ),
    ToolMessage("a cat", tool_call_id="call-1", name="lookup", id="m-tool", artifact={"rows": [1]}),
    ToolMessage("boom", tool_call_id="call-2", status="error"),
    FunctionMessage("42", name="legacy_function"),
    AIMessage(
        [{"type": "text", "text": "It is a cat."}, {"type": "reasoning", "reasoning": "looked"}],
        id="m-ai-2",
        response_metadata={"model_name": "fake-1"},
    ),
    ChatMessage(role="critic", content="meh", id="m-chat"),
    AIMessageChunk("partial", id="m-chunk"),
    HumanMessageChunk("typing…"),
]


def test_every_message_type_comes_back_equal():
    DjangoChatMessageHistory("lc-all").add_messages(EVERY_KIND)
    again = DjangoChatMessageHistory("lc-all").messages
    assert again == EVERY_KIND
    assert [type(m) for m in again] == [type(m) for m in EVERY_KIND]
    assert again[2].tool_calls == EVERY_KIND[2].tool_calls
    assert again[3].tool_call_id == "call-1" and again[4].status == "error"
    assert [m.id for m in again] == [m.id for m in EVERY_KIND]


def test_a_window_gives_the_newest_messages_equal():
    DjangoChatMessageHistory("lc-window").add_messages(EVERY_KIND)
    assert DjangoChatMessageHistory("lc-window", window=4).messages == EVERY_KIND[-4:]


@pytest.mark.django_db(transaction=True)
def test_async_methods_round_trip_every_message_type():
    async def flow() -> list:
        history = DjangoChatMessageHistory("lc-async-all")
        await history.aadd_messages(EVERY_KIND)
        messages = await DjangoChatMessageHistory(
            "lc-async-all", window=len(EVERY_KIND)
        ).aget_messages()
        await sync_to_async(connections.close_all)()
        return messages

    assert asyncio.run(flow()) == EVERY_KIND


def test_what_is_stored_shown_and_pushed_is_readable_text():
    DjangoChatMessageHistory("lc-text").add_messages(EVERY_KIND)
    rows = memory.history(ChatSession.objects.get(session_id="lc-text"))
    assert [(m.role, m.content) for m in rows] == [
        ("System", "Be brief."),
        ("Human", "What is in this picture?\n[image]\n[image]"),
        ("AI", '[tool call lookup] {"q": "cat", "n": 1}\n[tool call count] {}'),
        ("Tool", "[tool result call-1] a cat"),
        ("Tool", "[tool result call-2] boom"),
        ("Function", "42"),
        ("AI", "It is a cat.\n[reasoning]"),
        ("critic", "meh"),
        ("AI", "partial"),
        ("Human", "typing…"),
    ]
    assert rows[0].item == {"type": "system", "data": EVERY_KIND[0].model_dump()}


def test_text_is_cut_at_the_limit_but_the_message_is_kept_whole(settings):
    settings.MOTORHEAD = {"MAX_CONTENT_LENGTH": 10}
    message = HumanMessage("y" * 40, id="long")
    assert readable_text(message) == "y" * 9 + "…"
    DjangoChatMessageHistory("lc-long").add_messages([message])
    assert DjangoChatMessageHistory("lc-long").messages == [message]


def test_rows_other_clients_wrote_and_agents_items_read_as_plain_messages():
    session = memory.get_or_create_session("lc-mixed")
    memory.append_messages(
        session,
        [("Human", "hi"), ("AI", "[function_call f] {}")],
        items=[None, {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}],
    )
    assert DjangoChatMessageHistory("lc-mixed").messages == [
        HumanMessage("hi"),
        AIMessage("[function_call f] {}"),
    ]


def test_an_item_edited_into_something_unreadable_falls_back_to_the_text():
    DjangoChatMessageHistory("lc-edited").add_messages([HumanMessage("hello", id="h")])
    ChatSession.objects.get(session_id="lc-edited").messages.update(
        item={"type": "human", "data": {"no": "content"}}
    )
    assert DjangoChatMessageHistory("lc-edited").messages == [HumanMessage("hello")]
