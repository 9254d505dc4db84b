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

import json
from collections.abc import Sequence
from typing import Any

from asgiref.sync import sync_to_async
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_to_dict,
    messages_from_dict,
)
from langchain_core.messages import ChatMessage as RoleMessage

from . import engine, memory
from .conf import motorhead_settings
from .models import ChatMessage, ChatSession

# LangChain's message types, stored under the roles Motorhead's own clients write.
ROLES = {"human": "Human", "ai": "AI", "system": "System", "tool": "Tool", "function": "Function"}
_TYPES: dict[str, type[BaseMessage]] = {
    "human": HumanMessage,
    "user": HumanMessage,
    "ai": AIMessage,
    "assistant": AIMessage,
    "system": SystemMessage,
}
for _chunk in ("Human", "AI", "System", "Tool", "Function"):
    ROLES[f"{_chunk}MessageChunk"] = ROLES[_chunk.lower()]


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
        """Append in one transaction; each message is kept whole (``ChatMessage.item``)
        beside its readable text (:func:`readable_text`)."""
        memory.append_messages(
            self.session,
            [from_langchain(message) for message in messages],
            items=[serialize(message) for message in messages],
        )

    def clear(self) -> None:
        """Delete the conversation here, and on the server when ``DELETE_REMOTE`` says so."""
        engine.delete(self.session)
        self._session = None

    async def aget_messages(self) -> list[BaseMessage]:
        return await sync_to_async(lambda: self.messages)()

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        await sync_to_async(self.add_messages)(messages)

    async def aclear(self) -> None:
        await sync_to_async(self.clear)()


def to_langchain(message: ChatMessage) -> BaseMessage:
    """A stored message as it was written: the serialized message in ``item`` when it came
    from LangChain, else LangChain's type for its role (any other role keeps its name)."""
    item = message.item
    if isinstance(item, dict) and _is_serialized(item):
        try:
            return messages_from_dict([item])[0]
        except (ValueError, KeyError, TypeError):  # edited by hand: the text is still there
            pass
    kind = _TYPES.get(message.role.lower())
    if kind is None:
        return RoleMessage(content=message.content, role=message.role)
    return kind(content=message.content)


def from_langchain(message: BaseMessage) -> tuple[str, str]:
    """``(role, content)`` a LangChain message is stored, shown and pushed under (see
    :func:`readable_text`); the message itself goes in ``item`` (:func:`serialize`)."""
    role = (
        message.role if isinstance(message, RoleMessage) else ROLES.get(message.type, message.type)
    )
    return role, readable_text(message)


def serialize(message: BaseMessage) -> dict[str, Any]:
    """The message as ``messages_to_dict`` writes it: every field, read back equal."""
    return message_to_dict(message)


def readable_text(message: BaseMessage) -> str:
    """The text the admin, REST and Motorhead show for a message.

    A string content is itself; list content joins its text parts with newlines (an
    image is ``[image]``, any other part ``[<type>]``); each tool call adds a line
    ``[tool call <name>] <arguments as JSON>``; a ToolMessage starts with
    ``[tool result <tool_call_id>]``. Cut at ``MAX_CONTENT_LENGTH``.
    """
    content = message.content
    if isinstance(content, str):
        lines = [content] if content else []
    else:
        lines = [_part_text(part) for part in content]
    for call in getattr(message, "tool_calls", None) or []:
        arguments = json.dumps(call.get("args", {}), ensure_ascii=False, default=str)
        lines.append(f"[tool call {call.get('name', '')}] {arguments}")
    text = "\n".join(line for line in lines if line)
    if isinstance(message, ToolMessage):
        text = f"[tool result {message.tool_call_id}] {text}".rstrip()
    limit = motorhead_settings.MAX_CONTENT_LENGTH
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return ""
    kind = str(part.get("type", ""))
    if isinstance(part.get("text"), str):
        return str(part["text"])
    if "image" in kind:
        return "[image]"
    return f"[{kind}]" if kind else ""


_SERIALIZED_TYPES = frozenset(
    {"human", "ai", "system", "chat", "tool", "function", "remove"}
    | {f"{name}MessageChunk" for name in ("Human", "AI", "System", "Chat", "Tool", "Function")}
)


def _is_serialized(item: Any) -> bool:
    """Whether ``item`` is a serialized LangChain message (not another framework's item)."""
    return (
        isinstance(item, dict)
        and set(item) == {"type", "data"}
        and item["type"] in _SERIALIZED_TYPES
        and isinstance(item["data"], dict)
    )
