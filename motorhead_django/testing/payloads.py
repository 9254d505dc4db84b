"""Request bodies as Motorhead's serde structs read them, with serde_json's error texts.

The texts follow serde_json 1.0's wording (``missing field `messages```,
``invalid type: integer `5`, expected a string``, ``duplicate field ...``).
Line and column come from Python's decoder for syntax errors and point at the
end of the body for type errors, so they can differ from serde's by a few
characters; tests should match the text before ``at line``.
"""

from __future__ import annotations

import json
from typing import Any


class PayloadError(ValueError):
    """The text of a 400 ``{"error": ...}`` body."""


class _Pairs(list[tuple[str, Any]]):
    """A JSON object with its keys in order, duplicates kept (serde refuses them in structs)."""


def parse_memory_payload(text: str) -> tuple[list[tuple[str, str]], str | None]:
    """``MemoryMessagesAndContext``: ``{"messages": [{role, content}...], "context": str|null}``."""
    document = _load(text)
    fields = _struct(document, text, "struct MemoryMessagesAndContext", ("messages", "context"))
    if "messages" not in fields:
        raise _error("missing field `messages`", text)
    messages_value = fields["messages"]
    if not isinstance(messages_value, list) or isinstance(messages_value, _Pairs):
        raise _error(f"invalid type: {_unexpected(messages_value)}, expected a sequence", text)
    messages = []
    for item in messages_value:
        message = _struct(item, text, "struct MemoryMessage", ("role", "content"))
        for name in ("role", "content"):
            if name not in message:
                raise _error(f"missing field `{name}`", text)
            if not isinstance(message[name], str):
                raise _error(f"invalid type: {_unexpected(message[name])}, expected a string", text)
        messages.append((message["role"], message["content"]))
    context = fields.get("context")
    if context is not None and not isinstance(context, str):
        raise _error(f"invalid type: {_unexpected(context)}, expected a string", text)
    return messages, context


def parse_retrieval_payload(text: str) -> str:
    """``SearchPayload``: ``{"text": str}``."""
    fields = _struct(_load(text), text, "struct SearchPayload", ("text",))
    if "text" not in fields:
        raise _error("missing field `text`", text)
    if not isinstance(fields["text"], str):
        raise _error(f"invalid type: {_unexpected(fields['text'])}, expected a string", text)
    return fields["text"]


def _load(text: str) -> Any:
    def reject_constant(name: str) -> Any:
        raise _error("expected value", text)

    try:
        return json.loads(text, object_pairs_hook=_Pairs, parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text):
            what = (
                "EOF while parsing a value" if not text.strip() else "EOF while parsing an object"
            )
        elif exc.msg.startswith("Extra data"):
            what = "trailing characters"
        elif "property name" in exc.msg:
            what = "key must be a string"
        elif "delimiter" in exc.msg:
            what = "expected `,` or `}`" if "," in exc.msg else "expected `:`"
        else:
            what = "expected value"
        column = exc.colno - 1 if exc.pos >= len(text) else exc.colno
        raise PayloadError(
            f"Json deserialize error: {what} at line {exc.lineno} column {column}"
        ) from None


def _struct(value: Any, text: str, expected: str, names: tuple[str, ...]) -> dict[str, Any]:
    """A serde-derived struct: from an object (unknown keys ignored) or a positional array."""
    if isinstance(value, _Pairs):
        fields: dict[str, Any] = {}
        for key, item in value:
            if key in names:
                if key in fields:
                    raise _error(f"duplicate field `{key}`", text)
                fields[key] = item
        return fields
    if isinstance(value, list):
        if len(value) > len(names):
            raise _error(f"invalid length {len(value)}, expected fewer elements in array", text)
        required = [name for name in names if name != "context"]
        if len(value) < len(required):
            raise _error(
                f"invalid length {len(value)}, expected {expected} with {len(names)} elements", text
            )
        return dict(zip(names, value, strict=False))
    raise _error(f"invalid type: {_unexpected(value)}, expected {expected}", text)


def _unexpected(value: Any) -> str:
    """serde's ``Unexpected`` display of a JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, _Pairs):
        return "map"
    return "sequence"


def _error(what: str, text: str) -> PayloadError:
    lines = text.split("\n")
    return PayloadError(
        f"Json deserialize error: {what} at line {len(lines)} column {len(lines[-1])}"
    )
