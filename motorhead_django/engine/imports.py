"""Importing the server's sessions into Django, resumably (``motorhead_import``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model

from motorhead_django import memory
from motorhead_django.client import MotorheadClient, get_client
from motorhead_django.exceptions import (
    MotorheadError,
    MotorheadSessionExistsError,
    MotorheadValidationError,
)
from motorhead_django.models import ChatSession, parse_server_id

from .pulling import pull_session


def remote_session_ids(
    client: MotorheadClient, namespace: str | None, *, size: int = 1000
) -> Iterator[list[str]]:
    """Every page of ``GET /sessions`` for one namespace (``None``: the un-namespaced set).

    The server refuses pages past 100, so ``size`` bounds what can be listed:
    a full 100th page raises rather than silently stopping short.
    """
    for page in range(1, 101):
        ids = client.list_sessions(page=page, size=size, namespace=namespace)
        if ids:
            yield ids
        if len(ids) < size:
            return
    raise MotorheadError(
        f"more than {100 * size} sessions in namespace {namespace!r}: "
        "the server lists at most 100 pages; use a larger page size"
    )


@dataclass
class ImportResult:
    imported: int = 0
    skipped: int = 0  # imported by an earlier run (resumable)
    refused: list[str] = field(default_factory=list)  # ids this app cannot hold
    stopped: str = ""  # why the run stopped early; run it again to resume


def import_sessions(
    namespaces: list[str],
    *,
    page_size: int = 1000,
    refresh: bool = False,
    owner: Any = None,
    client: MotorheadClient | None = None,
    progress: Callable[[str, int, int, str, int], object] | None = None,
) -> ImportResult:
    """Bring every session the server lists in ``namespaces`` into Django, resumably.

    A server id ``u<pk>:<id>`` (what this app names a user's session by) comes back
    as that user's session ``<id>`` (with ``owner`` given, only when it is that user:
    any other is refused, listed in ``refused``); any other id becomes a session of ``owner``
    (default: none) that keeps the server's id. A session imported before (it has
    been pulled) is skipped unless ``refresh``. The run stops at the first session
    it cannot pull, so a rerun resumes there. ``progress(namespace, index, total,
    session_id, added)`` is called after each session.
    """
    client = client or get_client()
    result = ImportResult()
    for namespace in dict.fromkeys(namespaces):
        # A session written during the listing moves to the last page: count it once.
        pages = remote_session_ids(client, namespace or None, size=page_size)
        ids = list(dict.fromkeys(remote_id for page in pages for remote_id in page))
        known = dict(
            ChatSession.objects.filter(namespace=namespace, remote_id__in=ids).values_list(
                "remote_id", "last_pulled_at"
            )
        )
        for index, remote_id in enumerate(ids, start=1):
            if known.get(remote_id) is not None and not refresh:
                result.skipped += 1
                continue
            try:
                session = _imported_session(remote_id, namespace, owner)
            except MotorheadValidationError as exc:
                result.refused.append(f"{remote_id!r}: {exc}")
                continue
            pulled = pull_session(session.pk, client=client)
            if pulled.refused:
                # Nothing a rerun can change: say so and go on with the others.
                result.refused.append(f"{remote_id!r}: {pulled.refused}")
                continue
            if pulled.error or pulled.busy:
                why = pulled.error or "busy (a worker holds its lock)"
                result.stopped = f"stopped at {remote_id!r}: {why}"
                return result
            result.imported += 1
            if progress is not None:
                progress(namespace, index, len(ids), remote_id, pulled.added)
    return result


def _imported_session(remote_id: str, namespace: str, owner: Any) -> ChatSession:
    """The local session of a server id, created (through the core) when missing."""
    found = ChatSession.objects.filter(remote_id=remote_id).first()
    if found is not None and found.namespace != namespace:
        # Motorhead lists one conversation under every namespace it was posted with.
        raise MotorheadValidationError(
            {
                "session_id": "Already held here under namespace "
                f"{found.namespace!r}: the server keeps one conversation per id, "
                "whatever the namespace."
            }
        )
    if found is not None:
        return found
    owner_pk, session_id = parse_server_id(remote_id)
    if owner_pk is not None and owner is not None and owner_pk != owner.pk:
        # The id names another user's session; whose it really is (this app's session
        # of user owner_pk, or an older app's thread) only the operator can tell.
        raise MotorheadValidationError(
            {
                "session_id": f"The id names user {owner_pk}'s session (u<user id>:…), "
                "not the --owner's: not given to either. Import it without --owner to "
                f"give it to user {owner_pk}."
            }
        )
    if owner_pk is not None:
        owner = get_user_model().objects.filter(pk=owner_pk).first()
        if owner is None:
            raise MotorheadValidationError(
                {"session_id": f"Its owner (user {owner_pk}) does not exist here."}
            )
    try:
        return memory.create_session(
            session_id, namespace=namespace, owner=owner, remote_id=remote_id
        )
    except MotorheadSessionExistsError:
        # Created meanwhile under this server id (a concurrent import): that one.
        found = ChatSession.objects.filter(namespace=namespace, remote_id=remote_id).first()
        if found is None:  # the owner already has another session with this id, or the
            # server id is held under another namespace (created meanwhile)
            raise
        return found
