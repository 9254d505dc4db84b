"""The JSON parser of both surfaces: size and nesting bounded before anything is parsed.

Python's ``json`` module recurses once per nesting level, so a body of a few
thousand brackets raises ``RecursionError`` (a 500) inside DRF's parser. This
parser reads at most ``MOTORHEAD['MAX_REQUEST_BYTES']`` bytes (a body sent
without a ``Content-Length`` included), scans the nesting iteratively, and only
then parses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from motorhead_django.conf import motorhead_settings
from motorhead_django.memory import MAX_JSON_DEPTH, json_too_deep

from .errors import RequestTooLarge


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


class MotorheadJSONParser(JSONParser):
    """DRF's JSON parser with the body's size and nesting bounded (400 or 413)."""

    max_depth = MAX_JSON_DEPTH

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        limit = motorhead_settings.MAX_REQUEST_BYTES
        raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise RequestTooLarge(limit)
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - the body is not {encoding} text.") from exc
        if json_too_deep(text, self.max_depth):
            raise ParseError(f"JSON parse error - nested deeper than {self.max_depth} levels.")
        try:
            return json.loads(text, parse_constant=_refuse_constant)
        except ValueError as exc:  # JSONDecodeError, or a number too long to convert
            raise ParseError(f"JSON parse error - {exc}") from exc
