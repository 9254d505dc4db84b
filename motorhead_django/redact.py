"""Content redaction before anything leaves: ``MOTORHEAD["REDACT"]``.

``REDACT`` names a callable ``redact(role: str, content: str) -> str``. It is
applied to every message the sync engine pushes (and compares with the
server's window), to what the local summariser is given, and, with
``REDACT_LOCAL``, to what is stored. It must be deterministic: the same text
always redacts the same way, or every pull would see the server's copy as
drift. :func:`default` is a useful one (emails, phone numbers, card numbers by
the Luhn check). Not to be confused with :mod:`motorhead_django.redaction`,
which keeps *secrets* (``MOTORHEAD["SECRETS"]``) out of errors and logs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from django.utils.module_loading import import_string

from .conf import motorhead_settings

Redactor = Callable[[str, str], str]

EMAIL = "[email]"
PHONE = "[phone]"
CARD = "[card]"

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# 13 to 19 digits, optionally grouped by single spaces or dashes; never part of a longer run.
_CARD = re.compile(r"(?<![\d-])(?<!\d )\d(?:[ -]?\d){12,18}(?![\d-])(?! \d)")
# An optional +country code, then 9 to 15 digits in groups (spaces, dots, dashes, brackets).
_PHONE = re.compile(
    r"(?<![\w+])(?<!\d[ .-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d(?:[ .-]?\d){6,13}"
    r"(?!\w)(?![ .-]\d)"
)


def luhn(digits: str) -> bool:
    """Whether ``digits`` passes the Luhn check (as every payment card number does)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return CARD if luhn(digits) else match.group()


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return PHONE if 9 <= len(digits) <= 15 else match.group()


def default(role: str, content: str) -> str:
    """Replace emails, card numbers (Luhn-valid) and phone numbers with placeholders."""
    text = _EMAIL.sub(EMAIL, content)
    text = _CARD.sub(_card, text)
    return _PHONE.sub(_phone, text)


def redactor() -> Redactor | None:
    """The configured callable, or None when ``REDACT`` is not set."""
    path = motorhead_settings.REDACT
    return import_string(path) if path else None


def text(role: str, content: str) -> str:
    """``content`` as it may leave (unchanged without ``REDACT``)."""
    redact = redactor()
    return content if redact is None else redact(role, content)


def pairs(messages: Iterable[Any]) -> list[tuple[str, str]]:
    """``(role, content)`` of each message as it is sent out: the one helper the sync
    engine, the rehydration, the pull's comparison and the summariser call."""
    redact = redactor()
    if redact is None:
        return [(m.role, m.content) for m in messages]
    return [(m.role, redact(m.role, m.content)) for m in messages]


def local(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """What is stored: redacted too with ``REDACT_LOCAL``, else the original."""
    redact = redactor()
    if redact is None or not motorhead_settings.REDACT_LOCAL:
        return items
    return [(role, redact(role, content)) for role, content in items]


def local_items(
    roles: list[str], items: list[dict[str, Any] | None]
) -> list[dict[str, Any] | None]:
    """The agent items as stored: with ``REDACT_LOCAL``, every string value inside each
    (keys stay) redacted with its message's role, so no original text is kept there either.

    The redactor must be deterministic, so ids that point at each other (a tool call
    and its output) still match after it; one that rewrites short words such as
    ``"message"`` would break the items for their framework (the default never does).
    """
    redact = redactor()
    if redact is None or not motorhead_settings.REDACT_LOCAL:
        return items
    return [
        None if item is None else _redacted(item, role, redact)
        for role, item in zip(roles, items, strict=True)
    ]


def _redacted(value: Any, role: str, redact: Redactor) -> Any:
    # Items are at most memory.MAX_METADATA_DEPTH deep (validated first): recursion is safe.
    if isinstance(value, str):
        return redact(role, value)
    if isinstance(value, dict):
        return {key: _redacted(item, role, redact) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item, role, redact) for item in value]
    return value
