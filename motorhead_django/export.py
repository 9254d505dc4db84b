"""Data-subject export (JSON Lines and Markdown) and its import.

Exports are generators of text chunks: sessions and messages are read with
``QuerySet.iterator()`` in fixed-size chunks, so memory stays flat whatever the
number of messages (docs/governance.md has the measured figure). The JSON Lines
form is one object a line, each with a ``type``:

* ``export``: the header (format version, subject, when);
* ``session``: a session's fields, including its sync history fields;
* ``message``: one message with its metadata and its agent ``item`` (None for a
  plain message), ``session`` naming its session's ``key``;
* ``summary``: one entry of the summary timeline;
* ``receipt``: an erasure receipt about the subject (no content, kept after erasure).

:func:`import_export` reads the JSON Lines form back into identical records.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from django.contrib.auth import get_user_model
from django.db import DataError, IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import memory
from .exceptions import MotorheadValidationError
from .models import ChatMessage, ChatSession, ErasureReceipt, SummaryVersion

VERSION = 1
FORMATS = ("jsonl", "markdown")
_CHUNK = 2000

_SESSION_FIELDS = (
    "session_id",
    "remote_id",
    "namespace",
    "context",
    "tokens",
    "metadata",
    "last_sequence",
    "created_at",
    "updated_at",
    "sync_state",
    "context_pending",
    "sync_attempts",
    "last_error",
    "last_pushed_at",
    "last_pulled_at",
    "drift",
    "legal_hold",
    "retention_days",
    "retention_messages",
)
_MESSAGE_FIELDS = ("sequence", "role", "content", "created_at", "origin", "sync_state", "synced_at")
# The agent item (ChatMessage.item) rides along in JSON Lines, so an agent's conversation
# round-trips; an export written before it had none, so it is optional on import.
_EXPORTED_MESSAGE_FIELDS = (*_MESSAGE_FIELDS, "item")
_SUMMARY_FIELDS = ("context", "tokens", "through_sequence", "pulled_at")


def _value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _line(record: dict[str, Any]) -> str:
    # surrogatepass-safe: ensure_ascii escapes anything the text holds.
    return json.dumps(record, sort_keys=True) + "\n"


def sessions_of(user: Any = None, session: ChatSession | None = None) -> QuerySet[ChatSession]:
    if session is not None:
        return ChatSession.objects.filter(pk=session.pk)
    return ChatSession.objects.filter(owner=user)


# Called after each session is written, with a line saying so (the command's progress).
Done = Callable[[str], object]


def export_jsonl(
    sessions: QuerySet[ChatSession], *, subject: str = "", done: Done | None = None
) -> Iterator[str]:
    """The JSON Lines export of ``sessions``, one line at a time."""
    yield _line(
        {
            "type": "export",
            "version": VERSION,
            "subject": subject,
            "exported_at": timezone.now().isoformat(),
        }
    )
    for session in sessions.select_related("owner").order_by("pk").iterator(chunk_size=100):
        record = {name: _value(getattr(session, name)) for name in _SESSION_FIELDS}
        owner = session.owner.get_username() if session.owner is not None else None
        yield _line({"type": "session", "key": session.pk, "owner": owner, **record})
        messages = ChatMessage.objects.filter(session_id=session.pk).order_by("sequence")
        count = 0
        rows = messages.values_list(*_EXPORTED_MESSAGE_FIELDS)
        for row in rows.iterator(chunk_size=_CHUNK):
            fields = {
                name: _value(v) for name, v in zip(_EXPORTED_MESSAGE_FIELDS, row, strict=True)
            }
            count += 1
            yield _line({"type": "message", "session": session.pk, **fields})
        summaries = SummaryVersion.objects.filter(session_id=session.pk).order_by("pulled_at", "pk")
        for row in summaries.values_list(*_SUMMARY_FIELDS).iterator(chunk_size=_CHUNK):
            fields = {name: _value(v) for name, v in zip(_SUMMARY_FIELDS, row, strict=True)}
            yield _line({"type": "summary", "session": session.pk, **fields})
        if done is not None:
            done(f"{session}: {count} message(s)")
    if subject:
        for receipt in ErasureReceipt.objects.filter(subject=subject).iterator():
            yield _line({"type": "receipt", **receipt.as_dict()})


def export_markdown(
    sessions: QuerySet[ChatSession], *, subject: str = "", done: Done | None = None
) -> Iterator[str]:
    """A readable transcript of ``sessions``: one section per session, oldest message first."""
    yield f"# Conversation export{f' for {subject}' if subject else ''}\n\n"
    yield f"Exported {timezone.now().isoformat()}.\n"
    for session in sessions.order_by("pk").iterator(chunk_size=100):
        yield f"\n## Session {session}\n\n"
        yield f"- created {session.created_at.isoformat()}, last activity "
        yield f"{session.updated_at.isoformat()}\n- sync state: {session.sync_state}"
        yield f"{', legal hold' if session.legal_hold else ''}\n"
        if session.context:
            yield f"- summary: {_quote(session.context)}\n"
        yield "\n"
        messages = ChatMessage.objects.filter(session_id=session.pk).order_by("sequence")
        rows = messages.values_list("sequence", "role", "content", "created_at")
        count = 0
        for sequence, role, content, created in rows.iterator(chunk_size=_CHUNK):
            count += 1
            yield f"**{role}** (#{sequence}, {created.isoformat()}):\n\n{_quote(content)}\n\n"
        if done is not None:
            done(f"{session}: {count} message(s)")


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" for line in text.split("\n"))


def export(
    sessions: QuerySet[ChatSession],
    fmt: str = "jsonl",
    *,
    subject: str = "",
    done: Done | None = None,
) -> Iterator[str]:
    if fmt not in FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}; one of {FORMATS}.")
    writer = export_jsonl if fmt == "jsonl" else export_markdown
    return writer(sessions, subject=subject, done=done)


# -- import --------------------------------------------------------------------------


@dataclass
class ImportResult:
    sessions: int = 0
    messages: int = 0
    summaries: int = 0
    skipped: list[str] = field(default_factory=list)


class ExportFormatError(ValueError):
    """The file is not a motorhead-django JSON Lines export (line number in the text)."""


@contextlib.contextmanager
def _keep_timestamps() -> Iterator[None]:
    """Let the exported ``created_at`` stand: ``auto_now_add`` would overwrite it."""
    fields = [ChatMessage._meta.get_field("created_at"), ChatSession._meta.get_field("created_at")]
    saved = [f.auto_now_add for f in fields]
    try:
        for f in fields:
            f.auto_now_add = False
        yield
    finally:
        for f, value in zip(fields, saved, strict=True):
            f.auto_now_add = value


def import_export(lines: Iterable[str] | IO[str]) -> ImportResult:
    """Restore a JSON Lines export: each session with its messages and summary timeline.

    A session whose server id already exists in its namespace is skipped (and
    named in ``skipped``); owners are found by username (none if absent).
    """
    result = ImportResult()
    users = get_user_model()
    current: ChatSession | None = None
    skipping = False
    pending: list[ChatMessage] = []
    session_updated: dict[int, Any] = {}

    def flush() -> None:
        if pending:
            result.messages += memory.restore_messages(pending)
            pending.clear()

    try:
        with _keep_timestamps(), transaction.atomic():
            for number, text in enumerate(lines, start=1):
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                    kind = record["type"]
                except (ValueError, KeyError, TypeError):
                    raise ExportFormatError(f"Line {number}: not an export record.") from None
                if number == 1 and (kind != "export" or record.get("version") != VERSION):
                    raise ExportFormatError("Line 1: not a motorhead-django export (version 1).")
                try:
                    if kind == "session":
                        flush()
                        skipping = ChatSession.objects.filter(
                            namespace=record["namespace"], remote_id=record["remote_id"]
                        ).exists()
                        if skipping:
                            result.skipped.append(f"{record['namespace']}/{record['session_id']}")
                            continue
                        owner = None
                        if record.get("owner") is not None:
                            lookup = {users.USERNAME_FIELD: record["owner"]}
                            owner = users._default_manager.filter(**lookup).first()
                        values = {name: record[name] for name in _SESSION_FIELDS if name in record}
                        updated = values.pop("updated_at", None)
                        current = memory.restore_session(owner, _dates(values, ("created_at",)))
                        session_updated[current.pk] = parse_datetime(updated) if updated else None
                        result.sessions += 1
                    elif kind == "message" and current is not None and not skipping:
                        values = {name: record[name] for name in _MESSAGE_FIELDS}
                        values["item"] = _item(record.get("item"))
                        pending.append(
                            ChatMessage(
                                session=current, **_dates(values, ("created_at", "synced_at"))
                            )
                        )
                        if len(pending) >= _CHUNK:
                            flush()
                    elif kind == "summary" and current is not None and not skipping:
                        values = {name: record[name] for name in _SUMMARY_FIELDS}
                        SummaryVersion.objects.create(
                            session=current, **_dates(values, ("pulled_at",))
                        )
                        result.summaries += 1
                except MotorheadValidationError as exc:
                    raise ExportFormatError(f"Line {number}: a {kind} record with {exc}") from None
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    raise ExportFormatError(
                        f"Line {number}: a {kind} record without {exc}."
                    ) from None
            flush()
            for pk, updated in session_updated.items():
                if updated is not None:  # auto_now set it at save: put the exported one back
                    memory.restore_updated_at(pk, updated)
    except UnicodeDecodeError as exc:
        raise ExportFormatError(f"Not UTF-8 text (byte {exc.start}): not an export.") from None
    except (IntegrityError, DataError):
        # Rolled back whole. The database's text may quote content: it is not repeated here.
        raise ExportFormatError(
            "A record the database refused (a message sequence twice in one session, or a value "
            "it cannot store): nothing was imported."
        ) from None
    return result


def _item(item: Any) -> dict[str, Any] | None:
    """An exported agent item, checked as the memory core checks one it is given."""
    if item is not None:
        memory.validate_metadata(item, field="item")
    return item


def _dates(values: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    for name in names:
        if values.get(name):
            values[name] = parse_datetime(values[name])
    return values
