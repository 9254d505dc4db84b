"""A LangGraph checkpointer over the project's database.

    pip install "motorhead-django[langgraph]"

    from motorhead_django.langgraph import DjangoSaver

    graph = builder.compile(checkpointer=DjangoSaver(owner=request.user))
    graph.invoke({"messages": [("user", "hi")]}, {"configurable": {"thread_id": "user-42"}})

Checkpoints, channel values and pending writes live in their own tables, as the
saver's serializer wrote them, so a new process (a new saver) resumes where the
last one stopped. Thread ids are scoped per owner, as session ids are. A thread's
root ``messages`` channel is also mirrored, message by message, into the owner's
``ChatSession`` whose ``session_id`` is the thread id, so
the conversation shows in the admin and the REST API and is pushed to Motorhead
like any other; ``delete_thread`` removes both.

The async methods run the sync ones through ``asgiref``'s ``sync_to_async``, so
they are safe inside a running event loop. Only this module imports LangGraph.
"""

from __future__ import annotations

import builtins
import contextvars
import hashlib
import json
import logging
import random
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from functools import wraps
from typing import Any, TypeVar, cast

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connection, transaction
from django.db.models import Q, QuerySet
from django.db.models.fields.json import KeyTransform
from langchain_core.messages import message_to_dict
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    PendingWrite,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from . import memory
from .conf import motorhead_settings
from .exceptions import MotorheadLegalHoldError, MotorheadValidationError
from .models import (
    LangGraphBlob,
    LangGraphCheckpoint,
    LangGraphMessage,
    LangGraphWrite,
    LegalHold,
)

logger = logging.getLogger(__name__)

#: The channel that is mirrored into the thread's ChatSession (MessagesState's).
MESSAGES = "messages"
#: LangChain message types, stored under the roles Motorhead's own clients write.
ROLES = {"human": "Human", "ai": "AI", "system": "System", "tool": "Tool", "function": "Function"}

_EMPTY = "empty"  # the type of a blob for a channel that has no value at that version
_PAGE = 100  # checkpoints read per query by list()
_MAX_ID = 255
_THREAD_TABLES: tuple[type[Any], ...] = (LangGraphCheckpoint, LangGraphBlob, LangGraphWrite)

F = TypeVar("F", bound=Callable[..., Any])
_Row = TypeVar("_Row", LangGraphCheckpoint, LangGraphBlob, LangGraphWrite)
# LangGraph's sync loop calls the saver from threads of its own, several at once.
_SQLITE_TURN = threading.RLock()
# Set while an async method runs its sync half in sync_to_async's thread, whose
# connection is kept (and closed by Django at the end of a request, as usual).
_ASYNC_CALL = contextvars.ContextVar("motorhead_langgraph_async_call", default=False)


def _db_call(method: F) -> F:
    """Run a saver method with the connection handling LangGraph's threads need.

    A connection a sync call opened is closed when it ends: LangGraph's worker
    threads never reach Django's end-of-request cleanup, so it would stay open
    until the thread is collected. SQLite has one writer at a time (and its
    shared in-memory database refuses a second instead of waiting), so there
    the calls take turns; other databases run them at once.
    """

    @wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        opened = connection.connection is None
        try:
            if connection.vendor != "sqlite":
                return method(*args, **kwargs)
            with _SQLITE_TURN:
                return method(*args, **kwargs)
        finally:
            if opened and not connection.in_atomic_block and not _ASYNC_CALL.get():
                connection.close()

    return wrapper  # type: ignore[return-value]


class DjangoSaver(BaseCheckpointSaver[str]):
    """A ``BaseCheckpointSaver`` keeping LangGraph's checkpoints in Django's database.

    Threads are scoped per owner, as sessions are: a saver made with
    ``owner=user`` reads, lists, writes, copies, prunes and deletes only that
    user's threads, and one without an owner only the ownerless ones, so two
    users' threads of one id are two threads. A thread's messages are mirrored
    into the owner's ChatSession whose id is the thread id (reached through REST
    and the compatible routes by that owner only), and ``delete_thread``
    deletes that one too.
    """

    def __init__(self, *, owner: Any = None, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        memory.validate_owner(owner)  # an anonymous request.user is refused here
        self.owner = owner

    def _scoped(self, model: type[_Row]) -> QuerySet[_Row]:
        """The rows of this saver's owner (None: the ownerless threads)."""
        return model.objects.filter(owner=self.owner)

    # Reading -------------------------------------------------------------------

    @_db_call
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names, or the thread's newest in its namespace."""
        conf = config["configurable"]
        rows = self._scoped(LangGraphCheckpoint).filter(
            thread_id=conf["thread_id"], checkpoint_ns=conf.get("checkpoint_ns", "")
        )
        if checkpoint_id := get_checkpoint_id(config):
            rows = rows.filter(checkpoint_id=checkpoint_id)
        row = rows.order_by("-checkpoint_id").first()
        return None if row is None else self._tuples([row])[0]

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Matching checkpoints, newest first, read a page of ``_PAGE`` at a time."""
        rows = _matching(self._scoped(LangGraphCheckpoint), config, filter, before)
        cursor: tuple[str, int] | None = None
        while limit is None or limit > 0:
            page, cursor = self._page(rows, cursor, limit)
            yield from page
            if cursor is None:
                return
            if limit is not None:
                limit -= len(page)

    @_db_call
    def _page(
        self,
        rows: QuerySet[LangGraphCheckpoint],
        after: tuple[str, int] | None,
        limit: int | None,
    ) -> tuple[builtins.list[CheckpointTuple], tuple[str, int] | None]:
        size = _PAGE if limit is None else min(limit, _PAGE)
        if after is not None:
            # Keyset pagination: a checkpoint written meanwhile shifts no page.
            rows = rows.filter(
                Q(checkpoint_id__lt=after[0]) | Q(checkpoint_id=after[0], pk__lt=after[1])
            )
        page = builtins.list(rows.order_by("-checkpoint_id", "-pk")[:size])
        cursor = (page[-1].checkpoint_id, page[-1].pk) if len(page) == size else None
        return self._tuples(page), cursor

    def _tuples(self, rows: Sequence[LangGraphCheckpoint]) -> builtins.list[CheckpointTuple]:
        """Checkpoint tuples for these rows, with two queries per (thread, namespace)."""
        checkpoints = {row.pk: self._load(row.type, row.checkpoint) for row in rows}
        groups: dict[tuple[str, str], builtins.list[LangGraphCheckpoint]] = defaultdict(
            builtins.list
        )
        for row in rows:
            groups[(row.thread_id, row.checkpoint_ns)].append(row)
        writes: dict[tuple[str, str, str], builtins.list[LangGraphWrite]] = defaultdict(
            builtins.list
        )
        blobs: dict[tuple[str, str, str, str], tuple[str, bytes]] = {}
        for (thread_id, ns), members in groups.items():
            for write in self._scoped(LangGraphWrite).filter(
                thread_id=thread_id,
                checkpoint_ns=ns,
                checkpoint_id__in={row.checkpoint_id for row in members},
            ):
                writes[(thread_id, ns, write.checkpoint_id)].append(write)
            wanted = {
                (channel, str(version))
                for row in members
                for channel, version in checkpoints[row.pk]["channel_versions"].items()
            }
            if not wanted:
                continue
            # One query for every (channel, version) pair; a few extra rows at most.
            for blob in (
                self._scoped(LangGraphBlob)
                .filter(
                    thread_id=thread_id,
                    checkpoint_ns=ns,
                    channel__in={channel for channel, _ in wanted},
                    version__in={version for _, version in wanted},
                )
                .exclude(type=_EMPTY)
            ):
                blobs[(thread_id, ns, blob.channel, blob.version)] = (blob.type, bytes(blob.blob))
        tuples = []
        for row in rows:
            checkpoint = checkpoints[row.pk]
            where = (row.thread_id, row.checkpoint_ns)
            values = {}
            for channel, version in checkpoint["channel_versions"].items():
                stored = blobs.get((*where, channel, str(version)))
                if stored is not None:
                    # Loaded per checkpoint: tuples never share a mutable value.
                    values[channel] = self.serde.loads_typed(stored)
            pending = sorted(
                writes[(*where, row.checkpoint_id)],
                key=lambda write: writes_sort_key(write.task_path, write.task_id, write.idx),
            )
            tuples.append(
                CheckpointTuple(
                    config=_config(row.thread_id, row.checkpoint_ns, row.checkpoint_id),
                    checkpoint=cast(Checkpoint, {**checkpoint, "channel_values": values}),
                    metadata=row.metadata,
                    parent_config=(
                        _config(row.thread_id, row.checkpoint_ns, row.parent_checkpoint_id)
                        if row.parent_checkpoint_id
                        else None
                    ),
                    pending_writes=[
                        (write.task_id, write.channel, self._load(write.type, write.blob))
                        for write in pending
                    ],
                )
            )
        return tuples

    def _load(self, type_: str, data: Any) -> Any:
        return self.serde.loads_typed((type_, bytes(data)))

    # Writing -------------------------------------------------------------------

    @_db_call
    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint and the channel values that changed with it."""
        conf = config["configurable"]
        thread_id = _checked_id(conf["thread_id"], "thread_id")
        ns = conf.get("checkpoint_ns", "")
        values = checkpoint["channel_values"]
        rest = {key: value for key, value in checkpoint.items() if key != "channel_values"}
        type_, data = self.serde.dumps_typed(rest)
        meta = get_serializable_checkpoint_metadata(config, metadata)
        blobs = []
        for channel, version in new_versions.items():
            blob_type, blob = (
                self.serde.dumps_typed(values[channel]) if channel in values else (_EMPTY, b"")
            )
            blobs.append(
                LangGraphBlob(
                    owner=self.owner,
                    thread_id=thread_id,
                    checkpoint_ns=ns,
                    channel=channel,
                    version=str(version),
                    type=blob_type,
                    blob=blob,
                )
            )
        with transaction.atomic():
            # A (channel, version) value never changes: a second put of it is a no-op.
            LangGraphBlob.objects.bulk_create(blobs, ignore_conflicts=True)
            LangGraphCheckpoint.objects.update_or_create(
                owner=self.owner,
                thread_id=thread_id,
                checkpoint_ns=ns,
                checkpoint_id=checkpoint["id"],
                defaults={
                    "parent_checkpoint_id": conf.get("checkpoint_id") or "",
                    "run_id": str(meta.get("run_id") or "")[:_MAX_ID],
                    "type": type_,
                    "checkpoint": data,
                    "metadata": meta,
                },
            )
            if ns == "" and MESSAGES in new_versions and MESSAGES in values:
                self._mirror(thread_id, values[MESSAGES])
        return _config(thread_id, ns, checkpoint["id"])

    @_db_call
    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes; a repeated write is kept once, a special one replaced."""
        conf = config["configurable"]
        rows = []
        for index, (channel, value) in enumerate(writes):
            type_, data = self.serde.dumps_typed(value)
            rows.append(
                LangGraphWrite(
                    owner=self.owner,
                    thread_id=conf["thread_id"],
                    checkpoint_ns=conf.get("checkpoint_ns", ""),
                    checkpoint_id=conf["checkpoint_id"],
                    task_id=task_id,
                    task_path=task_path,
                    idx=WRITES_IDX_MAP.get(channel, index),
                    channel=channel,
                    type=type_,
                    blob=data,
                )
            )
        regular = [row for row in rows if row.idx >= 0]
        special = [row for row in rows if row.idx < 0]  # errors, interrupts: the last one wins
        with transaction.atomic():
            LangGraphWrite.objects.bulk_create(regular, ignore_conflicts=True)
            # Inserted when new, then overwritten: ON CONFLICT ... DO UPDATE cannot name
            # the partial (per-owner) unique indexes. A concurrent insert makes ours wait
            # and skip, and our update then wins, so the last write still wins.
            LangGraphWrite.objects.bulk_create(special, ignore_conflicts=True)
            for row in special:
                self._scoped(LangGraphWrite).filter(
                    thread_id=row.thread_id,
                    checkpoint_ns=row.checkpoint_ns,
                    checkpoint_id=row.checkpoint_id,
                    task_id=task_id,
                    idx=row.idx,
                ).update(channel=row.channel, type=row.type, blob=row.blob, task_path=task_path)

    @_db_call
    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """What ``DeltaChannel`` values are rebuilt from: the base class's walk up the
        parent chain, read ``_PAGE`` ancestors per query instead of one tuple each."""
        if not channels:
            return {}
        target = self.get_tuple(config)
        conf = config["configurable"]
        thread_id, ns = conf["thread_id"], conf.get("checkpoint_ns", "")
        rows = self._scoped(LangGraphCheckpoint).filter(thread_id=thread_id, checkpoint_ns=ns)
        parents = dict(rows.values_list("checkpoint_id", "parent_checkpoint_id"))
        chain = []
        cursor = target.parent_config if target is not None else None
        current = cursor["configurable"]["checkpoint_id"] if cursor is not None else None
        while current and current in parents and current not in chain:
            chain.append(current)
            current = parents[current]
        collected: dict[str, builtins.list[PendingWrite]] = {name: [] for name in channels}
        seeds: dict[str, Any] = {}
        remaining = set(channels)
        for start in range(0, len(chain), _PAGE):
            if not remaining:
                break
            ids = chain[start : start + _PAGE]
            loaded = {row.checkpoint_id: row for row in rows.filter(checkpoint_id__in=ids)}
            versions = {
                checkpoint_id: self._load(row.type, row.checkpoint)["channel_versions"]
                for checkpoint_id, row in loaded.items()
            }
            writes: dict[str, builtins.list[LangGraphWrite]] = defaultdict(builtins.list)
            for write in self._scoped(LangGraphWrite).filter(
                thread_id=thread_id,
                checkpoint_ns=ns,
                checkpoint_id__in=ids,
                channel__in=remaining,
            ):
                writes[write.checkpoint_id].append(write)
            stored = {
                (blob.channel, blob.version): blob
                for blob in self._scoped(LangGraphBlob)
                .filter(
                    thread_id=thread_id,
                    checkpoint_ns=ns,
                    channel__in=remaining,
                    version__in={str(v) for found in versions.values() for v in found.values()},
                )
                .exclude(type=_EMPTY)
            }
            for checkpoint_id in ids:
                if not remaining or checkpoint_id not in loaded:
                    break
                ordered = sorted(
                    writes[checkpoint_id],
                    key=lambda w: writes_sort_key(w.task_path, w.task_id, w.idx),
                )
                for write in reversed(ordered):
                    if write.channel in remaining:
                        value = self._load(write.type, write.blob)
                        collected[write.channel].append((write.task_id, write.channel, value))
                for name in builtins.list(remaining):
                    version = versions[checkpoint_id].get(name)
                    blob = None if version is None else stored.get((name, str(version)))
                    if blob is not None:
                        seeds[name] = self._load(blob.type, blob.blob)
                        remaining.discard(name)
            else:
                continue
            break
        result: dict[str, DeltaChannelHistory] = {}
        for name in channels:
            entry: DeltaChannelHistory = {"writes": builtins.list(reversed(collected[name]))}
            if name in seeds:
                entry["seed"] = seeds[name]
            result[name] = entry
        return result

    # Deleting and copying --------------------------------------------------------

    @_db_call
    def delete_thread(self, thread_id: str) -> None:
        """Delete the thread's checkpoints and writes, and its mirrored conversation."""
        with transaction.atomic():
            self._refuse_if_held(thread_id)
            for model in _THREAD_TABLES:
                self._scoped(model).filter(thread_id=thread_id).delete()
            # The owner's session with this id (ids are scoped per owner), as the mirror wrote it.
            session = memory.find_session(thread_id, owner=self.owner)
            if session is not None:
                memory.delete_session(session)

    @_db_call
    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints these runs wrote, with their writes (the mirror stays)."""
        run_ids = [str(run_id) for run_id in run_ids]
        if not run_ids:
            return
        with transaction.atomic():
            doomed = self._scoped(LangGraphCheckpoint).filter(run_id__in=run_ids)
            threads = set(doomed.values_list("thread_id", flat=True))
            for thread_id in threads:
                self._refuse_if_held(thread_id)
            self._delete_checkpoints(doomed)
            for thread_id in threads:
                self._collect_blobs(thread_id)

    @_db_call
    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, value and write; the target's messages are mirrored."""
        target = _checked_id(target_thread_id, "target_thread_id")
        with transaction.atomic():
            for model in _THREAD_TABLES:
                manager: Any = model.objects
                rows = builtins.list(self._scoped(model).filter(thread_id=source_thread_id))
                for row in rows:  # the copy stays the owner's
                    row.pk, row.thread_id = None, target
                manager.bulk_create(rows, batch_size=500, ignore_conflicts=True)
            latest = self.get_tuple(_config(target, "", None))
            if latest is not None and MESSAGES in latest.checkpoint["channel_values"]:
                self._mirror(target, latest.checkpoint["channel_values"][MESSAGES])

    @_db_call
    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``keep_latest``: only each namespace's newest checkpoint stays (with the
        ancestors its ``DeltaChannel`` values are rebuilt from); ``delete``: none."""
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f'Unknown strategy {strategy!r}: use "keep_latest" or "delete".')
        with transaction.atomic():
            for thread_id in thread_ids:
                self._refuse_if_held(thread_id)
                if strategy == "delete":
                    for model in _THREAD_TABLES:
                        self._scoped(model).filter(thread_id=thread_id).delete()
                    continue
                rows = self._scoped(LangGraphCheckpoint).filter(thread_id=thread_id)
                keep: set[int] = set()
                for ns in set(rows.values_list("checkpoint_ns", flat=True)):
                    keep |= self._latest_chain(rows.filter(checkpoint_ns=ns))
                self._delete_checkpoints(rows.exclude(pk__in=keep))
                self._collect_blobs(thread_id)

    def _refuse_if_held(self, thread_id: str) -> None:
        """A thread's checkpoints hold its whole conversation: a legal hold on its mirrored
        session, or on its owner, keeps them as it keeps the session (no delete, no prune)."""
        session = memory.find_session(thread_id, owner=self.owner)
        if session is not None:
            memory.refuse_if_held(session)
        elif self.owner is not None and LegalHold.objects.filter(owner=self.owner).exists():
            raise MotorheadLegalHoldError(
                "This thread's owner is under a legal hold: its checkpoints cannot be deleted.",
                session_id=thread_id,
            )

    def _latest_chain(self, rows: QuerySet[LangGraphCheckpoint]) -> set[int]:
        """The newest checkpoint's pk, and its ancestors' back to a snapshot of every
        ``DeltaChannel`` it has (their values are replayed from those ancestors' writes)."""
        newest = rows.order_by("-checkpoint_id").first()
        if newest is None:
            return set()
        keep = {newest.pk}
        deltas = set(newest.metadata.get("counters_since_delta_snapshot") or ())
        row: LangGraphCheckpoint | None = newest
        while deltas and row is not None:
            keep.add(row.pk)
            versions = self._load(row.type, row.checkpoint)["channel_versions"]
            stored = (
                self._scoped(LangGraphBlob)
                .filter(thread_id=row.thread_id, checkpoint_ns=row.checkpoint_ns)
                .exclude(type=_EMPTY)
            )
            for channel in builtins.list(deltas):
                if (
                    channel not in versions
                    or stored.filter(channel=channel, version=str(versions[channel])).exists()
                ):
                    deltas.discard(channel)
            parent = row.parent_checkpoint_id
            row = rows.filter(checkpoint_id=parent).first() if parent else None
        return keep

    def _delete_checkpoints(self, rows: QuerySet[LangGraphCheckpoint]) -> None:
        doomed: dict[tuple[str, str], builtins.list[str]] = defaultdict(builtins.list)
        for thread_id, ns, checkpoint_id in rows.values_list(
            "thread_id", "checkpoint_ns", "checkpoint_id"
        ):
            doomed[(thread_id, ns)].append(checkpoint_id)
        for (thread_id, ns), ids in doomed.items():
            self._scoped(LangGraphWrite).filter(
                thread_id=thread_id, checkpoint_ns=ns, checkpoint_id__in=ids
            ).delete()
            self._scoped(LangGraphCheckpoint).filter(
                thread_id=thread_id, checkpoint_ns=ns, checkpoint_id__in=ids
            ).delete()

    def _collect_blobs(self, thread_id: str) -> None:
        """Delete the thread's channel values no remaining checkpoint refers to."""
        used = set()
        for row in (
            self._scoped(LangGraphCheckpoint)
            .filter(thread_id=thread_id)
            .only("checkpoint_ns", "type", "checkpoint")
        ):
            for channel, version in self._load(row.type, row.checkpoint)[
                "channel_versions"
            ].items():
                used.add((row.checkpoint_ns, channel, str(version)))
        unused = [
            pk
            for pk, ns, channel, version in self._scoped(LangGraphBlob)
            .filter(thread_id=thread_id)
            .values_list("pk", "checkpoint_ns", "channel", "version")
            if (ns, channel, version) not in used
        ]
        for start in range(0, len(unused), 500):
            self._scoped(LangGraphBlob).filter(pk__in=unused[start : start + 500]).delete()

    # The mirror ----------------------------------------------------------------

    def _mirror(self, thread_id: str, messages: Any) -> None:
        """Append the messages not mirrored yet to the thread's ChatSession, in order.

        Messages whose role is not in ``ALLOWED_ROLES`` are left out. Runs in a
        savepoint: a mirror the memory core refuses (a thread id that is no valid
        session id, a session being deleted) is logged and tried again at the
        next checkpoint, and never costs the checkpoint itself.
        """
        if not isinstance(messages, builtins.list):
            return
        try:
            with transaction.atomic():
                session = memory.get_or_create_session(thread_id, owner=self.owner)
                seen = set(
                    LangGraphMessage.objects.filter(session=session).values_list(
                        "message_id", flat=True
                    )
                )
                allowed = motorhead_settings.ALLOWED_ROLES
                fresh = []
                for index, message in enumerate(messages):
                    message_id = _message_id(message, index)
                    if message_id in seen or not hasattr(message, "content"):
                        continue
                    role = _role(message)
                    if allowed is None or role in allowed:  # others are left out of the mirror
                        seen.add(message_id)
                        fresh.append((message_id, role, _text(message), _item(message)))
                step = motorhead_settings.MAX_MESSAGES_PER_REQUEST
                for start in range(0, len(fresh), step):
                    batch = fresh[start : start + step]
                    pairs = [(role, text) for _, role, text, _ in batch]
                    items = [item for _, _, _, item in batch]
                    rows = memory.append_messages(session, pairs, items=items)
                    LangGraphMessage.objects.bulk_create(
                        LangGraphMessage(session=session, chat_message=row, message_id=message_id)
                        for row, (message_id, *_) in zip(rows, batch, strict=True)
                    )
        except (MotorheadValidationError, DatabaseError) as exc:  # rolled back to the savepoint
            logger.warning("LangGraph thread %s: messages not mirrored: %s", thread_id, exc)

    # Async ---------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await _in_sync_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        rows = _matching(
            self._scoped(LangGraphCheckpoint), config, filter, before
        )  # lazy: no query yet
        cursor: tuple[str, int] | None = None
        while limit is None or limit > 0:
            page, cursor = await _in_sync_thread(self._page, rows, cursor, limit)
            for item in page:
                yield item
            if cursor is None:
                return
            if limit is not None:
                limit -= len(page)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await _in_sync_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await _in_sync_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await _in_sync_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await _in_sync_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await _in_sync_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await _in_sync_thread(self.prune, thread_ids, strategy=strategy)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await _in_sync_thread(
            self.get_delta_channel_history, config=config, channels=channels
        )

    def get_next_version(self, current: str | None, channel: None) -> str:
        # Zero-padded so versions sort as text; the random part tells apart two
        # branches forked from one checkpoint (as LangGraph's own savers do).
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"


async def _in_sync_thread(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``method(*args, **kwargs)`` through ``sync_to_async`` (one thread, one connection)."""
    token = _ASYNC_CALL.set(True)  # sync_to_async runs the call in a copy of this context
    try:
        return await sync_to_async(method)(*args, **kwargs)
    finally:
        _ASYNC_CALL.reset(token)


def _config(thread_id: str, ns: str, checkpoint_id: str | None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ns}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def _matching(
    rows: QuerySet[LangGraphCheckpoint],
    config: RunnableConfig | None,
    filter: dict[str, Any] | None,
    before: RunnableConfig | None,
) -> QuerySet[LangGraphCheckpoint]:
    conf = (config or {}).get("configurable") or {}
    if "thread_id" in conf:
        rows = rows.filter(thread_id=conf["thread_id"])
    if conf.get("checkpoint_ns") is not None:
        rows = rows.filter(checkpoint_ns=conf["checkpoint_ns"])
    if checkpoint_id := conf.get("checkpoint_id"):
        rows = rows.filter(checkpoint_id=checkpoint_id)
    if before is not None and (before_id := get_checkpoint_id(before)):
        rows = rows.filter(checkpoint_id__lt=before_id)
    for index, (key, value) in enumerate((filter or {}).items()):
        # An alias, not metadata__<key>: a key may contain "__" or name a lookup.
        alias = f"_metadata_{index}"
        rows = rows.alias(**{alias: KeyTransform(key, "metadata")}).filter(**{alias: value})
    return rows


def _checked_id(value: Any, field: str) -> str:
    """A thread id the tables hold on every database (1 to 255 characters of text)."""
    problem = memory.text_problem(value)
    if problem is None and not 1 <= len(value) <= _MAX_ID:
        problem = f"1 to {_MAX_ID} characters."
    if problem is not None:
        raise MotorheadValidationError({field: problem})
    return str(value)


def _message_id(message: Any, index: int) -> str:
    # add_messages gives every message an id; a custom reducer may not: then the
    # position stands in (such a channel can only be appended to).
    raw = getattr(message, "id", None)
    message_id = _storable(str(raw)) if raw else f"#{index}"
    if len(message_id) > _MAX_ID:
        message_id = "sha256:" + hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest()
    return message_id


def _role(message: Any) -> str:
    kind = str(getattr(message, "type", "") or "")
    if kind == "chat":  # a ChatMessage keeps its own role
        return str(getattr(message, "role", "") or "Chat")
    return ROLES.get(kind, kind.title() or "Unknown")


def _text(message: Any) -> str:
    """A readable text for the mirror: the text parts, then any tool calls."""
    content = message.content
    if isinstance(content, str):
        parts = [content] if content else []
    else:
        parts = []
        for block in content or ():
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif isinstance(block, dict):
                parts.append(f"[{block.get('type', 'content')}]")
    for call in getattr(message, "tool_calls", None) or ():
        parts.append(f"{call.get('name')}({json.dumps(call.get('args'), default=str)})")
    text = "\n".join(parts)
    return _storable(text)[: motorhead_settings.MAX_CONTENT_LENGTH]


def _item(message: Any) -> dict[str, Any] | None:
    """The message kept whole for ``ChatMessage.item``, as ``DjangoChatMessageHistory``
    stores one (``messages_to_dict``), so ``to_langchain`` reads it back equal; None
    for a value no JSON column holds (the checkpoint still has it exactly)."""
    try:
        item = message_to_dict(message)
        memory.validate_items([item], 1)
    except (TypeError, ValueError, AttributeError, MotorheadValidationError):
        return None
    return item


def _storable(text: str) -> str:
    """``text`` without what no database column holds: NUL and lone surrogates."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
