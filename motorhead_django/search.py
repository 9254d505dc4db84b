"""Local search: substring search over sessions and messages, word search within a session.

Two kinds of search, each with one meaning on every database:

* **Substring search** (:func:`contains`, :func:`sessions_matching`, :func:`admin_sessions`):
  the REST ``?search=`` and the admin's search box. Case-insensitive, ``%`` and ``_``
  are plain characters. On PostgreSQL it is Django's ``icontains``,
  ``UPPER(content) LIKE UPPER('%text%')``, which migration ``0001_initial``
  serves with a pg_trgm GIN index on exactly that expression
  (:data:`CONTENT_INDEX`). SQLite's ``LIKE`` folds ASCII only, so there it compares
  :func:`fold` of both sides (registered as an SQL function by :func:`register_sqlite`):
  the same upper-casing PostgreSQL does, character by character, so both agree.
* **Word search in one session** (:func:`search`), for retrieval without embeddings:
  PostgreSQL full-text search (stemmed with ``SEARCH_CONFIG``), or a portable share
  of the query's words elsewhere.

docs/search.md has the measurements behind the choice of index.
"""

from __future__ import annotations

import operator
import re
from functools import reduce
from typing import Any

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.db.models.lookups import IContains
from django.utils.text import smart_split, unescape_string_literal

from .conf import motorhead_settings
from .models import ChatMessage, ChatSession

#: The trigram index the initial migration creates on PostgreSQL: its expression is what
#: ``content__icontains`` compiles to there (``UPPER(content::text)``; the cast is a no-op).
CONTENT_INDEX = "motorhead_message_content_trgm"
#: The same for session ids, so a search never tests every session row.
SESSION_ID_INDEX = "motorhead_session_id_trgm"
SQLITE_FOLD = "motorhead_fold"

_SEARCH_TERMS = 20
_SEARCH_SCAN = 1000


def fold(value: str | None) -> str | None:
    """Upper-case ``value`` one character at a time, as PostgreSQL's ``UPPER`` does.

    A character whose upper case is longer (``ß`` → ``SS``) stays as it is, as
    ``towupper`` leaves it, so SQLite's answers match PostgreSQL's.
    """
    if value is None:
        return None
    return "".join(u if len(u := c.upper()) == 1 else c for c in value)


def register_sqlite(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: :func:`fold` as an SQL function on SQLite."""
    if connection.vendor == "sqlite":
        connection.connection.create_function(SQLITE_FOLD, 1, fold, deterministic=True)


class Contains(IContains):
    """``icontains`` on PostgreSQL (what the trigram index serves); Unicode-folded on SQLite.

    Used as an expression: ``filter(Contains(F("content"), text))``.
    """

    # The name Django's backends key their SQL on (the UPPER cast, the LIKE operator).
    lookup_name = "icontains"

    def as_sqlite(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, params = self.process_lhs(compiler, connection)
        # instr(), not LIKE: no wildcard in the text to escape.
        return f"instr({SQLITE_FOLD}({lhs}), {SQLITE_FOLD}(%s)) > 0", [*params, self.rhs]


def contains(field: str, text: str) -> Q:
    """``field`` (a path, ``owner__username`` say) holds ``text``, in any case."""
    return Q(Contains(F(field), text))


def messages_containing(text: str) -> QuerySet[ChatMessage]:
    """Messages holding ``text``: on PostgreSQL, one bitmap scan of the trigram index."""
    return ChatMessage.objects.filter(contains("content", text))


def _ids(query: QuerySet[Any], field: str) -> QuerySet[Any]:
    return query.order_by().values_list(field, flat=True)


def sessions_matching(sessions: QuerySet[ChatSession], text: str) -> QuerySet[ChatSession]:
    """The REST ``?search=``: ``text`` in the session id or in any of its messages."""
    return sessions.filter(pk__in=_matching_ids(text))


def admin_sessions(
    sessions: QuerySet[ChatSession], search_term: str, username_field: str
) -> QuerySet[ChatSession]:
    """The admin's search box: Django's rules (every word, or "quoted phrase", must be
    in the session id, the owner's username or a message), without the message join
    that defeats the index and needs a ``DISTINCT``."""
    for bit in smart_split(search_term):
        if bit.startswith(('"', "'")) and bit[0] == bit[-1]:
            bit = unescape_string_literal(bit)
        if bit:
            owners = ChatSession.objects.filter(contains(f"owner__{username_field}", bit))
            sessions = sessions.filter(
                pk__in=_matching_ids(bit).union(_ids(owners, "pk"), all=True)
            )
    return sessions


def _matching_ids(text: str) -> QuerySet[Any]:
    # One UNION of two index scans (messages, session ids), each read once, rather than
    # an OR, which PostgreSQL can only answer by testing every session row.
    by_id = ChatSession.objects.filter(contains("session_id", text))
    return _ids(messages_containing(text), "session_id").union(_ids(by_id, "pk"), all=True)


def search(session: ChatSession, text: str, *, limit: int = 10) -> list[tuple[ChatMessage, float]]:
    """The session's messages nearest to ``text``, nearest first, as ``(message, dist)``.

    On PostgreSQL, full-text search (``SEARCH_CONFIG`` stems the words, so
    "ordered" finds "order"): ``dist`` is ``1 - rank / (rank + 1)``. Elsewhere
    a portable word search: ``dist`` is the share of the query's words a
    message lacks (0 = all present). Ties go to the newest; at most the newest
    ``_SEARCH_SCAN`` matches are read.
    """
    if transaction.get_connection().vendor == "postgresql":
        return _full_text_search(session, text, limit)
    terms = set(_words(text)[:_SEARCH_TERMS])
    if not terms:
        return []
    matches = reduce(operator.or_, (contains("content", term) for term in terms))
    candidates = session.messages.filter(matches).order_by("-sequence")[:_SEARCH_SCAN]
    scored = []
    for message in candidates:
        dist = 1 - len(terms & set(_words(message.content))) / len(terms)
        if dist < 1:
            scored.append((message, round(dist, 6)))
    scored.sort(key=lambda pair: (pair[1], -pair[0].sequence))
    return scored[:limit]


def _full_text_search(
    session: ChatSession, text: str, limit: int
) -> list[tuple[ChatMessage, float]]:
    from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

    terms = _words(text)[:_SEARCH_TERMS]
    if not terms:
        return []
    config = motorhead_settings.SEARCH_CONFIG
    # Any of the words, like the portable search; more of them rank higher.
    query = reduce(operator.or_, (SearchQuery(term, config=config) for term in terms))
    vector = SearchVector("content", config=config)
    candidates = (
        session.messages.annotate(
            # Normalisation 32 maps a rank to rank / (rank + 1): into [0, 1).
            document=vector,
            rank=SearchRank(vector, query, normalization=32),
        )
        .filter(document=query)
        .order_by("-rank", "-sequence")[:limit]
    )
    return [(message, round(1 - message.rank, 6)) for message in candidates]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())
