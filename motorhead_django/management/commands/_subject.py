"""The ``--user USERNAME | --session ID`` pair the governance commands share."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser

from motorhead_django.models import ChatSession


def add_subject_arguments(parser: CommandParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--user", metavar="USERNAME", help="Every session this user owns.")
    group.add_argument("--session", metavar="ID", help="One session, by its primary key.")


def subject(options: dict[str, Any]) -> tuple[Any, ChatSession | None]:
    """``(user, None)`` or ``(None, session)``; a CommandError when it does not exist."""
    if options.get("user") is not None:
        name = options["user"]
        if "\x00" in name:
            raise CommandError("--user: no NUL characters.")
        users = get_user_model()
        user = users._default_manager.filter(**{users.USERNAME_FIELD: name}).first()
        if user is None:
            raise CommandError(f"--user {name!r}: no such user.")
        return user, None
    raw = options["session"]
    if not (str(raw).isascii() and str(raw).isdigit()):
        raise CommandError(f"--session {raw!r}: a session's primary key (a number).")
    session = ChatSession.objects.filter(pk=int(raw)).first()
    if session is None:
        raise CommandError(f"--session {raw}: no such session.")
    return None, session
