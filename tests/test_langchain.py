"""The LangChain chat message history backed by the app's models."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

pytest.importorskip("langchain_core", reason="install the langchain extra")

from langchain_core.language_models.fake_chat_models import FakeListChatModel  # noqa: E402
from langchain_core.messages import AIMessage, ChatMessage, HumanMessage, SystemMessage  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder  # noqa: E402
from langchain_core.runnables.history import RunnableWithMessageHistory  # noqa: E402

from motorhead_django import memory  # noqa: E402
from motorhead_django.exceptions import MotorheadValidationError  # noqa: E402
from motorhead_django.langchain import DjangoChatMessageHistory  # noqa: E402
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


def test_non_text_content_is_refused_and_nothing_is_written():
    history = DjangoChatMessageHistory("lc-5")
    with pytest.raises(MotorheadValidationError):
        history.add_messages(
            [HumanMessage("ok"), HumanMessage([{"type": "image_url", "image_url": "x"}])]
        )
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
