"""Seed the example's agent conversations, with no LLM: one OpenAI Agents SDK session
(``agents.testing.ScriptedModel``) and one LangGraph thread (a fake chat model).

Idempotent: a conversation already there is left as it is, so restarting the
example adds nothing. Both belong to the demo user, so its admin shows them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from motorhead_django import memory

SESSION_ID = "example-agents-sdk"
THREAD_ID = "example-langgraph"
INSTALL = "pip install motorhead-django"


class Command(BaseCommand):
    help = (
        "Seed one OpenAI Agents SDK session and one LangGraph thread (no LLM) for the demo "
        "user, unless they are there already."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        owner = get_user_model().objects.filter(username=username).first()
        if owner is None:
            raise CommandError(f"No user {username!r}: run example_demo_user first.")
        self.agents_session(owner)
        self.langgraph_thread(owner)

    def report(self, what: str, session_id: str, owner: Any, seeded: bool) -> None:
        session = memory.find_session(session_id, owner=owner)
        count = session.messages.count() if session is not None else 0
        state = "seeded" if seeded else "already there"
        self.stdout.write(f"{what} {session_id!r} ({state}, {count} messages) in the admin")

    def agents_session(self, owner: Any) -> None:
        try:
            from agents import Agent, Runner, function_tool, set_tracing_disabled
            from agents.testing import ScriptedModel, assistant_message, function_call

            from motorhead_django.openai_agents import DjangoSession
        except ImportError:
            self.stdout.write(f"Agents SDK example skipped: {INSTALL}[openai-agents]")
            return
        existing = memory.find_session(SESSION_ID, owner=owner)
        if existing is not None and existing.messages.exists():
            self.report("OpenAI Agents SDK session", SESSION_ID, owner, seeded=False)
            return
        set_tracing_disabled(True)  # a scripted run has nothing to trace (and no OpenAI key)

        def weather(city: str) -> str:
            """Today's weather in a city."""
            return f"18°C and sunny in {city}"

        async def conversation() -> None:
            try:
                session = DjangoSession(SESSION_ID, owner)
                model = ScriptedModel()
                agent = Agent(name="Assistant", model=model, tools=[function_tool(weather)])
                model.enqueue([function_call("weather", {"city": "Paris"}, call_id="call_1")])
                model.enqueue([assistant_message("It is 18°C and sunny in Paris.")])
                await Runner.run(agent, "What is the weather in Paris?", session=session)
                # The second turn is answered from the first one's items, read back.
                model.enqueue([assistant_message("Yes: sunny, so no umbrella today.")])
                await Runner.run(agent, "So I can leave the umbrella at home?", session=session)
            finally:
                await sync_to_async(connections.close_all)()

        asyncio.run(conversation())
        self.report("OpenAI Agents SDK session", SESSION_ID, owner, seeded=True)

    def langgraph_thread(self, owner: Any) -> None:
        try:
            from langchain_core.language_models.fake_chat_models import (
                FakeMessagesListChatModel,
            )
            from langchain_core.messages import AIMessage, HumanMessage
            from langgraph.graph import START, MessagesState, StateGraph

            from motorhead_django.langgraph import DjangoSaver
        except ImportError:
            self.stdout.write(f"LangGraph example skipped: {INSTALL}[langgraph]")
            return
        saver = DjangoSaver(owner=owner)
        config: Any = {"configurable": {"thread_id": THREAD_ID}}
        if saver.get_tuple(config) is not None:
            self.report("LangGraph thread", THREAD_ID, owner, seeded=False)
            return
        model = FakeMessagesListChatModel(
            responses=[
                AIMessage("Hello! I keep this thread's state in Django's database."),
                AIMessage("You said hello, then asked this: two turns, one thread."),
            ]
        )
        builder = StateGraph(MessagesState)
        builder.add_node("reply", lambda state: {"messages": [model.invoke(state["messages"])]})
        builder.add_edge(START, "reply")
        graph = builder.compile(checkpointer=saver)
        graph.invoke({"messages": [HumanMessage("Hello, graph.")]}, config)
        graph.invoke({"messages": [HumanMessage("What did I say first?")]}, config)
        self.report("LangGraph thread", THREAD_ID, owner, seeded=True)
