"""A LangChain chat message history kept in Django, and through the sync in Motorhead.

    pip install "motorhead-django[langchain]"

    from motorhead_django.langchain import DjangoChatMessageHistory

    history = DjangoChatMessageHistory("user-42", owner=request.user)
    history.add_messages([HumanMessage("hi"), AIMessage("hello")])  # one transaction, one push
    history.messages                                     # the whole conversation, oldest first
    DjangoChatMessageHistory("user-42", window=12).messages  # the newest 12: one indexed query

    RunnableWithMessageHistory(chain, lambda session_id: DjangoChatMessageHistory(session_id))

Only this module imports ``langchain_core``; the rest of the app never does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asgiref.sync import sync_to_async
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.messages import ChatMessage as RoleMessage

from . import memory
from .exceptions import MotorheadValidationError
from .models import ChatMessage, ChatSession

# LangChain's message types, stored under the roles Motorhead's own clients write.
ROLES = {"human": "Human", "ai": "AI", "system": "System"}
_TYPES: dict[str, type[BaseMessage]] = {
    "human": HumanMessage,
    "user": HumanMessage,
    "ai": AIMessage,
    "assistant": AIMessage,
    "system": SystemMessage,
}


class DjangoChatMessageHistory(BaseChatMessageHistory):
    """The messages of one session, read and written through the memory core.

    ``window`` limits what :attr:`messages` returns to the newest messages (a
    prompt rarely wants a whole long history, and this read stays one indexed
    query however long the conversation grows). Writes always append.
    """

    def __init__(
        self,
        session_id: str,
        *,
        namespace: str | None = None,
        owner: Any = None,
        window: int | None = None,
    ) -> None:
        memory.validate_session_id(session_id)  # refused here, not on first use
        if owner is None:
            memory.validate_ownerless_id(session_id)
        if namespace is not None:
            memory.validate_namespace(namespace)
        self.session_id = session_id
        self.namespace = namespace
        self.owner = owner
        self.window = window
        self._session: ChatSession | None = None

    @property
    def session(self) -> ChatSession:
        # Fetched (or created) on first use: building a history costs no query.
        if self._session is None:
            self._session = memory.get_or_create_session(
                self.session_id, namespace=self.namespace, owner=self.owner
            )
        return self._session

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        session = self.session
        rows = (
            memory.history(session) if self.window is None else session.messages.newest(self.window)
        )
        return [to_langchain(row) for row in rows]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        memory.append_messages(self.session, [from_langchain(message) for message in messages])

    def clear(self) -> None:
        """Delete the conversation here, and on the server when ``DELETE_REMOTE`` says so."""
        memory.delete_session(self.session)
        self._session = None

    async def aget_messages(self) -> list[BaseMessage]:
        return await sync_to_async(lambda: self.messages)()

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        await sync_to_async(self.add_messages)(messages)

    async def aclear(self) -> None:
        await sync_to_async(self.clear)()


def to_langchain(message: ChatMessage) -> BaseMessage:
    """A stored message as LangChain's type for its role (any other role keeps its name)."""
    kind = _TYPES.get(message.role.lower())
    if kind is None:
        return RoleMessage(content=message.content, role=message.role)
    return kind(content=message.content)


def from_langchain(message: BaseMessage) -> tuple[str, str]:
    """``(role, content)`` for a LangChain message; only text content can be stored."""
    if not isinstance(message.content, str):
        raise MotorheadValidationError(
            {"content": "Only text content can be stored (Motorhead keeps strings)."}
        )
    role = (
        message.role if isinstance(message, RoleMessage) else ROLES.get(message.type, message.type)
    )
    return role, message.content
