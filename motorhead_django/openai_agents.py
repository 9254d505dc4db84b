"""An OpenAI Agents SDK session kept in Django, and through the sync in Motorhead.

    pip install "motorhead-django[openai-agents]"

    from agents import Agent, Runner
    from motorhead_django.openai_agents import DjangoSession

    session = DjangoSession("user-42", owner=request.user)
    result = await Runner.run(agent, "What did I ask last time?", session=session)

Each session is a :class:`~motorhead_django.models.ChatSession` with that id in
the default namespace, one :class:`~motorhead_django.models.ChatMessage` per
item: the item itself, exactly as it went in, in ``ChatMessage.item``, and a
readable text in ``content`` (what the admin, the REST API and the push to
Motorhead show; see :func:`item_role_and_text`). The methods are coroutines that
run the ORM in a thread (``sync_to_async``), so they are safe in a running event
loop without ``DJANGO_ALLOW_ASYNC_UNSAFE``.

Only this module imports ``agents``; the rest of the app never does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

from agents.items import TResponseInputItem
from agents.memory import SessionABC, SessionSettings
from agents.memory.session_settings import coerce_session_settings, resolve_session_limit
from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from . import memory
from .conf import motorhead_settings
from .models import ChatMessage, ChatSession

__all__ = ["DjangoSession", "item_role_and_text"]

_T = TypeVar("_T")

# Roles of message items, stored under the roles Motorhead's own clients write.
ROLES = {"user": "Human", "assistant": "AI", "system": "System", "developer": "System"}
#: The role of tool results (``function_call_output`` and every other ``*_output`` item).
TOOL_ROLE = "Tool"
_ROLE_ITEMS = {"Human": "user", "AI": "assistant", "System": "system", "ai": "assistant"}

ARCHIVE_SUFFIX = "~archived-"
_DRIFT = (
    "a message the server holds was removed here (Agents SDK pop_item or clear_session); "
    "a resync replaces the server's copy"
)


class DjangoSession(SessionABC):
    """The items of one conversation, read and written through the memory core.

    ``archive_on_clear=True`` keeps the full local record when the conversation is
    cleared: before the items go, they are copied, unchanged and in order, into a new
    session of the same owner whose id is this one followed by ``~archived-<time>``.
    Use it under ``OpenAIResponsesCompactionSession``, which clears the session and
    writes back its compacted items: the session then holds what the model sees, the
    archive what was said.
    """

    def __init__(
        self,
        session_id: str,
        owner: Any = None,
        *,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        archive_on_clear: bool = False,
    ) -> None:
        memory.validate_session_id(session_id)  # refused here, not on first use
        if owner is None:
            memory.validate_ownerless_id(session_id)
        self.session_id = session_id
        self.owner = owner
        self.session_settings = (
            SessionSettings()
            if session_settings is None
            else coerce_session_settings(session_settings)
        )
        self.archive_on_clear = archive_on_clear

    # The ORM is synchronous: every method runs its queries in Django's thread for
    # sync code (thread_sensitive), one transaction each, and awaits the outcome.

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The newest ``limit`` items (default: ``session_settings.limit``, else all), oldest
        first; ``limit=0`` gives ``[]``."""
        resolved = resolve_session_limit(limit, self.session_settings)
        return await sync_to_async(self._get_items, thread_sensitive=True)(resolved)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` in one transaction, after every item already stored (also those
        another process is adding now: the session's sequence orders them); ``[]`` is a no-op."""
        if items:
            await _settled(sync_to_async(self._add_items, thread_sensitive=True)(list(items)))

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item, or None when there is none."""
        return await _settled(sync_to_async(self._pop_item, thread_sensitive=True)())

    async def clear_session(self) -> None:
        """Remove every item; the id can be used again at once (see docs/agents.md)."""
        await _settled(sync_to_async(self._clear_session, thread_sensitive=True)())

    # The synchronous implementations.

    def _session(self) -> ChatSession:
        return memory.get_or_create_session(self.session_id, owner=self.owner)

    def _get_items(self, limit: int | None) -> list[TResponseInputItem]:
        if limit is not None and limit <= 0:
            return []
        messages = self._session().messages
        rows = list(messages.chronological()) if limit is None else messages.newest(limit)
        return [stored_item(row) for row in rows]

    def _add_items(self, items: list[TResponseInputItem]) -> None:
        raw = [cast(dict[str, Any], item) for item in items]
        memory.validate_items(raw, len(raw))  # up front: errors name the item's own index
        pairs = [item_role_and_text(item) for item in raw]
        batch = motorhead_settings.MAX_MESSAGES_PER_REQUEST

        def write() -> None:
            with transaction.atomic():  # one write however many batches the limit cuts it into
                session = self._session()
                for start in range(0, len(pairs), batch):
                    memory.append_messages(
                        session, pairs[start : start + batch], items=raw[start : start + batch]
                    )

        _again_if_cleared(write)

    def _pop_item(self) -> TResponseInputItem | None:
        return _again_if_cleared(self._pop_newest)

    def _pop_newest(self) -> TResponseInputItem | None:
        newest = memory.pop_message(self._session(), drift=_DRIFT)
        return None if newest is None else stored_item(newest)

    def _clear_session(self) -> None:
        _again_if_cleared(self._clear)

    def _clear(self) -> None:
        with transaction.atomic():
            session = self._session()
            if self.archive_on_clear:
                # Under the row lock, so no write lands between the copy and the clear.
                self._archive(memory.lock_session(session))
            memory.clear_messages(session, drift=_DRIFT)

    def _archive(self, session: ChatSession) -> ChatSession | None:
        rows = list(session.messages.chronological())
        if not rows:
            return None
        suffix = f"{ARCHIVE_SUFFIX}{timezone.now():%Y%m%dT%H%M%S%f}"
        archive_id = self.session_id[: memory.MAX_ID_LENGTH - len(suffix)] + suffix
        archive = memory.get_or_create_session(
            archive_id, namespace=session.namespace, owner=session.owner
        )
        batch = motorhead_settings.MAX_MESSAGES_PER_REQUEST
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            memory.append_messages(
                archive, [(m.role, m.content) for m in chunk], items=[m.item for m in chunk]
            )
        return archive


def _again_if_cleared(change: Callable[[], _T]) -> _T:
    """Run ``change``, once more if a concurrent ``clear_session`` (local-only mode, where
    it deletes the session row) removed the session between our read and our write."""
    try:
        return change()
    except ChatSession.DoesNotExist:
        return change()


async def _settled(change: Awaitable[_T]) -> _T:
    """The outcome of a change, even when the caller is cancelled meanwhile.

    The transaction runs in a thread that a cancellation cannot stop: it commits or
    rolls back regardless. So a cancelled caller waits for that outcome and only then
    gets its ``CancelledError`` (a failure of the change is then not reported), and
    an item is never written behind the back of a caller told it was cancelled
    before the write finished. (The SDK's own backends do the same.)
    """
    task = asyncio.ensure_future(change)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
    if cancelled is not None:
        task.exception()  # retrieved: a failed change is not logged as never awaited
        raise cancelled
    return task.result()


def stored_item(message: ChatMessage) -> TResponseInputItem:
    """The item a message was written from; for a message written without one (through
    REST, the compatible routes, a pull) or by LangChain, an easy input message of its text."""
    item = message.item
    # Not another framework's (a LangChain message is stored as {"type", "data"}).
    if isinstance(item, dict) and set(item) != {"type", "data"}:
        return cast(TResponseInputItem, item)
    role = _ROLE_ITEMS.get(message.role, message.role.lower())
    if role not in ("assistant", "system", "developer"):
        role = "user"
    return cast(TResponseInputItem, {"role": role, "content": message.content})


def item_role_and_text(item: dict[str, Any]) -> tuple[str, str]:
    """The role and readable text an item is stored, shown and pushed to Motorhead with.

    - a message (``{"role": ...}``): Human, AI or System (user, assistant, system and
      developer), its text; text parts are joined by newlines, an image is ``[image]``,
      a file ``[file <name>]``, a refusal its text;
    - a tool call (``function_call`` and every other ``*_call``): AI,
      ``[function_call get_weather] {"city": "Paris"}`` (the tool's name and arguments);
    - a tool result (``*_call_output``): Tool, ``[function_call_output <call_id>] <output>``;
    - a reasoning item: AI, ``[reasoning] <summary text>``;
    - anything else: AI, ``[<type>]`` and what text it has.

    The text is cut at ``MAX_CONTENT_LENGTH`` (the item itself is kept whole).
    """
    if not isinstance(item, dict):
        # validate_metadata names the problem; a placeholder keeps the pairing.
        return "AI", ""
    kind = item.get("type")
    role = item.get("role")
    if isinstance(role, str) and kind in (None, "message"):
        text = _content_text(item.get("content"))
        return ROLES.get(role, role.capitalize() or "AI"), _cut(text)
    kind = kind if isinstance(kind, str) else "item"
    if kind.endswith("_output"):
        output = item.get("output")
        text = output if isinstance(output, str) else _content_text(output)
        call = item.get("call_id") or item.get("id") or ""
        return TOOL_ROLE, _cut(f"[{kind} {call}] {text}".replace("  ", " ").strip())
    if kind == "reasoning":
        summary = _content_text(item.get("summary")) or _content_text(item.get("content"))
        return "AI", _cut(f"[reasoning] {summary}".strip())
    if kind.endswith("_call"):
        name = item.get("name") or item.get("server_label") or ""
        details = item.get("arguments", item.get("input", item.get("action")))
        if details is not None and not isinstance(details, str):
            details = json.dumps(details, ensure_ascii=False)
        return "AI", _cut(
            " ".join(
                part for part in (f"[{kind} {name}]".replace(" ]", "]"), details or "") if part
            )
        )
    text = _content_text(item.get("content") or item.get("text"))
    return "AI", _cut(f"[{kind}] {text}".strip())


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]  # a tool's output can be one part
    if not isinstance(content, Sequence):
        return ""
    parts = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict):
            kind = str(part.get("type", ""))
            if isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part.get("refusal"), str):
                parts.append(part["refusal"])
            elif "image" in kind:
                parts.append("[image]")
            elif "file" in kind:
                parts.append(
                    f"[file {part.get('filename') or part.get('file_id') or ''}]".replace(" ]", "]")
                )
            elif kind:
                parts.append(f"[{kind}]")
    return "\n".join(parts)


def _cut(text: str) -> str:
    limit = motorhead_settings.MAX_CONTENT_LENGTH
    return text if len(text) <= limit else text[: limit - 1] + "…"
