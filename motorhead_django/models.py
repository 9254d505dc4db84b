"""Motorhead sessions and their messages, mirrored in the project's database.

The local database is the system of record: Motorhead keeps only a window of
recent messages and drops older ones (see docs/sync.md), so every message
ever written or seen is kept here, in a fixed per-session order.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from . import states
from .querysets import ApiKeyQuerySet, ChatMessageQuerySet, ChatSessionQuerySet
from .states import MessageOrigin, MessageSyncState, SyncState


class ChatSession(models.Model):
    """One Motorhead session: a conversation, its summary and its sync state."""

    session_id = models.CharField(
        _("session id"),
        max_length=255,
        help_text=_("The id its owner's clients use; unique per owner and namespace."),
    )
    remote_id = models.CharField(
        _("server id"),
        max_length=300,
        editable=False,
        help_text=_(
            "The id the Motorhead server knows this session by: u<owner id>:<session id> "
            "for a session created by a user, the session id itself for one without an "
            "owner (and for sessions imported or created before ids were scoped per owner)."
        ),
    )
    namespace = models.CharField(
        _("namespace"),
        max_length=255,
        blank=True,
        default="",
        help_text=_("The Motorhead namespace it is listed under; empty for none."),
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        null=True,
        blank=True,
        # The conversation outlives its owner's account: it is the record.
        on_delete=models.SET_NULL,
        related_name="motorhead_sessions",
    )
    # None and "" differ: the server reports a missing summary as null.
    context = models.TextField(  # noqa: DJ001
        _("context"),
        null=True,
        blank=True,
        help_text=_("The rolling summary of the conversation (Motorhead's context)."),
    )
    tokens = models.PositiveBigIntegerField(
        _("tokens"),
        default=0,
        help_text=_("Tokens the server has spent summarising this session."),
    )
    summarized_through = models.PositiveBigIntegerField(
        _("summarised through"),
        default=0,
        editable=False,
        help_text=_(
            "Last sequence the built-in summariser folded into the context: every message "
            "up to it is in the summary exactly once, none after it."
        ),
    )
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    last_sequence = models.PositiveBigIntegerField(
        _("last sequence"),
        default=0,
        editable=False,
        help_text=_("Sequence number of the newest message; the next one gets this + 1."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    # Sync bookkeeping: written only by the sync engine.
    sync_state = models.CharField(
        _("sync state"), max_length=16, choices=SyncState.choices, default=SyncState.LOCAL
    )
    context_pending = models.BooleanField(
        _("context pending"),
        default=False,
        help_text=_("The local context changed and has not been pushed yet."),
    )
    inflight_through = models.PositiveBigIntegerField(
        _("in flight through"),
        null=True,
        blank=True,
        help_text=_(
            "Last sequence of a batch sent but not yet confirmed: after a failure it is "
            "checked against the server's window before anything is sent again."
        ),
    )
    sync_attempts = models.PositiveIntegerField(_("sync attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True, default="")
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    last_pushed_at = models.DateTimeField(_("last pushed"), null=True, blank=True)
    last_pulled_at = models.DateTimeField(_("last pulled"), null=True, blank=True)
    drift = models.TextField(
        _("drift"),
        blank=True,
        default="",
        help_text=_("What the last pull or verify found different on the server; empty if none."),
    )
    delete_requested_at = models.DateTimeField(
        _("delete requested"),
        null=True,
        blank=True,
        help_text=_("Set when a delete waits for the server's confirmation (a tombstone)."),
    )

    # Governance (docs/governance.md): a hold no delete path overrides, and the
    # session's own retention, which replaces its namespace's policy when set.
    legal_hold = models.BooleanField(
        _("legal hold"),
        default=False,
        help_text=_("Held: no retention, user, API or admin delete removes it."),
    )
    retention_days = models.PositiveIntegerField(
        _("retention (days)"),
        null=True,
        blank=True,
        help_text=_("Delete this many days after its last activity; empty: the policy's."),
    )
    retention_messages = models.PositiveIntegerField(
        _("retention (messages)"),
        null=True,
        blank=True,
        help_text=_("Keep only the newest this many messages; empty: the policy's."),
    )

    objects = ChatSessionQuerySet.as_manager()

    class Meta:
        verbose_name = _("chat session")
        verbose_name_plural = _("chat sessions")
        ordering = ("-created_at", "-pk")
        constraints = [
            # Ids are scoped per owner: one user can neither see nor take another's id.
            models.UniqueConstraint(
                fields=("owner", "namespace", "session_id"),
                condition=Q(owner__isnull=False),
                name="motorhead_session_id_per_owner",
            ),
            # One local session per server id, across namespaces: Motorhead's message
            # storage is not namespaced (one flat id space), so two sessions with one
            # server id would share one conversation there.
            models.UniqueConstraint(fields=("remote_id",), name="motorhead_session_remote_id"),
        ]
        indexes = [
            # The sweep's query: only sessions with work left, by due time, so an
            # idle sweep never scans the (many) synced sessions.
            models.Index(
                fields=("next_attempt_at",),
                condition=Q(sync_state__in=states.ACTIVE),
                name="motorhead_session_due",
            ),
            models.Index(fields=("sync_state",), name="motorhead_session_state"),
            # The admin's default order: most recent activity first.
            models.Index(fields=("-updated_at", "-id"), name="motorhead_session_activity"),
            models.Index(
                fields=("next_attempt_at",),
                condition=Q(delete_requested_at__isnull=False),
                name="motorhead_session_tombstone",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.session_id}" if self.namespace else self.session_id

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.remote_id:  # fixed once set: the server knows the session by it
            self.remote_id = server_id(self.owner_id, self.session_id)
        super().save(*args, **kwargs)


#: The server id form of a session created by a user: ``u<user pk>:<session id>``.
OWNED_ID = re.compile(r"u([0-9]+):(.*)", re.DOTALL)
#: The server id form a pre-release upgrade gave a session that shared its server id with a
#: session of another namespace: ``n<session pk>:<session id>``.
MOVED_ID = re.compile(r"n([0-9]+):(.*)", re.DOTALL)


def server_id(owner_pk: int | None, session_id: str) -> str:
    """The id the Motorhead server gets for a new session: ``u<owner pk>:<id>`` when it
    has an owner (collision-free: no ownerless id may take that form), else the id."""
    return session_id if owner_pk is None else f"u{owner_pk}:{session_id}"


def parse_server_id(remote_id: str) -> tuple[int | None, str]:
    """``(owner pk, session id)`` for a server id (:func:`server_id` reversed)."""
    match = OWNED_ID.fullmatch(remote_id)
    if match is None:
        return None, remote_id
    return int(match.group(1)), match.group(2)


class ChatMessage(models.Model):
    """One message of a session, in a per-session order that never changes."""

    session = models.ForeignKey(
        ChatSession,
        verbose_name=_("session"),
        on_delete=models.CASCADE,
        related_name="messages",
    )
    sequence = models.PositiveBigIntegerField(
        _("sequence"),
        help_text=_(
            "Position in the conversation, from 1. Only a pull moves it: to place messages "
            "other clients wrote on the server before ours."
        ),
    )
    role = models.CharField(
        _("role"), max_length=255, help_text=_("Free text, as Motorhead stores it: Human, AI, …")
    )
    content = models.TextField(_("content"))
    item = models.JSONField(
        _("item"),
        null=True,
        blank=True,
        help_text=_(
            "The message exactly as an agent framework gave it (an Agents SDK item, a "
            "serialized LangChain message), read back unchanged; content is its readable "
            "text, the one shown and pushed to Motorhead. Empty for plain messages."
        ),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    origin = models.CharField(
        _("origin"), max_length=8, choices=MessageOrigin.choices, default=MessageOrigin.LOCAL
    )
    sync_state = models.CharField(
        _("sync state"),
        max_length=8,
        choices=MessageSyncState.choices,
        default=MessageSyncState.PENDING,
    )
    synced_at = models.DateTimeField(_("synced"), null=True, blank=True)

    objects = ChatMessageQuerySet.as_manager()

    class Meta:
        verbose_name = _("chat message")
        verbose_name_plural = _("chat messages")
        ordering = ("session", "sequence")
        constraints = [
            # Also the index behind "a session's newest N messages".
            models.UniqueConstraint(
                fields=("session", "sequence"), name="motorhead_message_sequence"
            ),
        ]
        indexes = [
            # What the push still has to send, in order, per session.
            models.Index(
                fields=("session", "sequence"),
                condition=Q(sync_state=MessageSyncState.PENDING),
                name="motorhead_message_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.session} #{self.sequence} {self.role}"


class ApiKey(models.Model):
    """A key for the Motorhead-compatible routes, stored hashed.

    The full key (``mhd_<prefix>_<secret>``) is shown once, when it is issued
    (:meth:`issue`); only its SHA-256 and its short prefix are kept. The prefix
    finds the row, the hash is compared in constant time. Sessions created with a
    key belong to its owner; a key with a namespace only reaches that namespace.
    """

    PREFIX = "mhd_"

    name = models.CharField(_("name"), max_length=100, help_text=_("What the key is for."))
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="motorhead_api_keys",
        help_text=_("Sessions created with this key belong to this user."),
    )
    # None: every namespace; "" is the "no namespace" namespace.
    namespace = models.CharField(  # noqa: DJ001
        _("namespace"),
        max_length=255,
        null=True,
        blank=True,
        help_text=_("Only this namespace is reachable with the key; empty for all."),
    )
    prefix = models.CharField(
        _("prefix"),
        max_length=16,
        unique=True,
        editable=False,
        help_text=_("The visible start of the key, to tell keys apart."),
    )
    hashed_key = models.CharField(_("hashed key"), max_length=64, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True, editable=False)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ("-created_at", "-pk")

    def __str__(self) -> str:
        return f"{self.name} ({self.PREFIX}{self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def issue(cls, owner: Any, name: str, namespace: str | None = None) -> tuple[ApiKey, str]:
        """Create a key; returns the row and the full key, which is never stored."""
        key = cls(name=name, owner=owner, namespace=namespace)
        raw = key.set_new_secret()
        key.save()
        return key, raw

    def set_new_secret(self) -> str:
        """Give this (unsaved) key a fresh secret; returns the full key, shown once."""
        self.prefix = secrets.token_hex(4)
        raw = f"{self.PREFIX}{self.prefix}_{secrets.token_urlsafe(32)}"
        self.hashed_key = _digest(raw)
        return raw

    @classmethod
    def find(cls, raw: str) -> ApiKey | None:
        """The active key ``raw`` names, or None (one indexed query)."""
        start = len(cls.PREFIX)
        prefix = raw[start : start + 8]
        # Checked before the query: a NUL (or any non-hex) character would reach
        # PostgreSQL, which refuses NUL in text (a 500 with no credentials at all).
        if not raw.startswith(cls.PREFIX) or raw[start + 8 : start + 9] != "_":
            return None
        if not _PREFIX_CHARACTERS.fullmatch(prefix):
            return None
        key = cls.objects.active().select_related("owner").filter(prefix=prefix).first()
        if key is None or not hmac.compare_digest(key.hashed_key, _digest(raw)):
            return None
        return key

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            ApiKey.objects.filter(pk=self.pk).update(revoked_at=self.revoked_at)


_PREFIX_CHARACTERS = re.compile("[0-9a-f]{8}")


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


class SummaryVersion(models.Model):
    """One summary (Motorhead's ``context``) as a pull found it; never overwritten."""

    session = models.ForeignKey(
        ChatSession,
        verbose_name=_("session"),
        on_delete=models.CASCADE,
        related_name="summaries",
    )
    # None: the server had no summary; "NONE": its summariser found nothing to say.
    context = models.TextField(_("context"), null=True, blank=True)  # noqa: DJ001
    tokens = models.PositiveBigIntegerField(
        _("tokens"), default=0, help_text=_("The server's token count when it was pulled.")
    )
    through_sequence = models.PositiveBigIntegerField(
        _("through sequence"),
        default=0,
        help_text=_("Last local sequence the server's window held when it was pulled."),
    )
    pulled_at = models.DateTimeField(_("pulled"), default=timezone.now)

    class Meta:
        verbose_name = _("summary version")
        verbose_name_plural = _("summary versions")
        ordering = ("session", "pulled_at", "pk")
        indexes = [
            models.Index(fields=("session", "-pulled_at"), name="motorhead_summary_latest"),
        ]

    def __str__(self) -> str:
        return f"{self.session} summary through #{self.through_sequence}"


# LangGraph checkpoints (motorhead_django.langgraph.DjangoSaver). Ids are LangGraph's
# own: a thread, a namespace ("" is the root graph, subgraphs nest under it) and a
# checkpoint id (a uuid6, so sorting by it sorts by time). Values are stored as the
# saver's serializer wrote them (type + bytes), so they come back exactly.


class LangGraphCheckpoint(models.Model):
    """One LangGraph checkpoint: a graph's state at one step (its channel values are blobs)."""

    thread_id = models.CharField(_("thread id"), max_length=255)
    # Scoped per owner like sessions (DjangoSaver(owner=...)): a thread id names
    # one thread of one owner. CASCADE: SET_NULL would merge it into the ownerless
    # threads; the mirrored ChatSession outlives the account as the record.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    checkpoint_ns = models.TextField(_("namespace"), blank=True, default="")
    checkpoint_id = models.CharField(_("checkpoint id"), max_length=255)
    parent_checkpoint_id = models.CharField(
        _("parent checkpoint id"), max_length=255, blank=True, default=""
    )
    run_id = models.CharField(
        _("run id"), max_length=255, blank=True, default="", help_text=_("From the metadata.")
    )
    type = models.CharField(_("type"), max_length=64, help_text=_("The serializer's type tag."))
    checkpoint = models.BinaryField(
        _("checkpoint"), help_text=_("The checkpoint without its channel values, serialized.")
    )
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("LangGraph checkpoint")
        verbose_name_plural = _("LangGraph checkpoints")
        ordering = ("thread_id", "checkpoint_ns", "-checkpoint_id")
        constraints = [
            # Also the indexes behind "a thread's newest checkpoint" and its listing. One
            # for ownerless threads, one per owner: NULLs are distinct in a unique index.
            models.UniqueConstraint(
                fields=("thread_id", "checkpoint_ns", "checkpoint_id"),
                condition=Q(owner__isnull=True),
                name="motorhead_checkpoint_id",
            ),
            models.UniqueConstraint(
                fields=("owner", "thread_id", "checkpoint_ns", "checkpoint_id"),
                condition=Q(owner__isnull=False),
                name="motorhead_checkpoint_id_owned",
            ),
        ]
        indexes = [
            models.Index(
                fields=("run_id",), condition=~Q(run_id=""), name="motorhead_checkpoint_run"
            ),
        ]

    def __str__(self) -> str:
        where = f"{self.thread_id}/{self.checkpoint_ns}" if self.checkpoint_ns else self.thread_id
        return f"{where} @ {self.checkpoint_id}"


class LangGraphBlob(models.Model):
    """One version of one channel's value; checkpoints refer to it by (channel, version)."""

    thread_id = models.CharField(_("thread id"), max_length=255)
    # The thread's owner, as on LangGraphCheckpoint.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    checkpoint_ns = models.TextField(_("namespace"), blank=True, default="")
    channel = models.CharField(_("channel"), max_length=255)
    version = models.CharField(_("version"), max_length=255)
    type = models.CharField(
        _("type"), max_length=64, help_text=_('The serializer\'s type tag; "empty" for no value.')
    )
    blob = models.BinaryField(_("value"), blank=True)

    class Meta:
        verbose_name = _("LangGraph channel value")
        verbose_name_plural = _("LangGraph channel values")
        ordering = ("thread_id", "checkpoint_ns", "channel", "version")
        constraints = [
            models.UniqueConstraint(
                fields=("thread_id", "checkpoint_ns", "channel", "version"),
                condition=Q(owner__isnull=True),
                name="motorhead_checkpoint_blob",
            ),
            models.UniqueConstraint(
                fields=("owner", "thread_id", "checkpoint_ns", "channel", "version"),
                condition=Q(owner__isnull=False),
                name="motorhead_checkpoint_blob_owned",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.thread_id} {self.channel} v{self.version}"


class LangGraphWrite(models.Model):
    """A pending write of a task, stored against the checkpoint it follows."""

    thread_id = models.CharField(_("thread id"), max_length=255)
    # The thread's owner, as on LangGraphCheckpoint.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    checkpoint_ns = models.TextField(_("namespace"), blank=True, default="")
    checkpoint_id = models.CharField(_("checkpoint id"), max_length=255)
    task_id = models.CharField(_("task id"), max_length=255)
    task_path = models.TextField(_("task path"), blank=True, default="")
    idx = models.IntegerField(
        _("index"), help_text=_("Position in the task's writes; negative for special channels.")
    )
    channel = models.CharField(_("channel"), max_length=255)
    type = models.CharField(_("type"), max_length=64)
    blob = models.BinaryField(_("value"), blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("LangGraph pending write")
        verbose_name_plural = _("LangGraph pending writes")
        ordering = ("thread_id", "checkpoint_ns", "checkpoint_id", "task_path", "task_id", "idx")
        constraints = [
            # Also the index behind "the writes of these checkpoints".
            models.UniqueConstraint(
                fields=("thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"),
                condition=Q(owner__isnull=True),
                name="motorhead_checkpoint_write",
            ),
            models.UniqueConstraint(
                fields=("owner", "thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"),
                condition=Q(owner__isnull=False),
                name="motorhead_checkpoint_write_owned",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.thread_id} @ {self.checkpoint_id} {self.task_id}[{self.idx}] {self.channel}"


class LangGraphMessage(models.Model):
    """Which LangGraph message a mirrored ChatMessage is, so each is mirrored once."""

    session = models.ForeignKey(
        ChatSession, verbose_name=_("session"), on_delete=models.CASCADE, related_name="+"
    )
    chat_message = models.ForeignKey(
        ChatMessage, verbose_name=_("message"), on_delete=models.CASCADE, related_name="+"
    )
    message_id = models.CharField(
        _("LangGraph message id"), max_length=255, help_text=_("The LangChain message's id.")
    )

    class Meta:
        verbose_name = _("LangGraph mirrored message")
        verbose_name_plural = _("LangGraph mirrored messages")
        ordering = ("session", "chat_message")
        constraints = [
            models.UniqueConstraint(
                fields=("session", "message_id"), name="motorhead_langgraph_message"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.session} {self.message_id}"


class MessageEmbedding(models.Model):
    """A message's embedding (``MOTORHEAD["EMBEDDINGS"]``): unit-length float32, for retrieval."""

    message = models.OneToOneField(
        ChatMessage,
        verbose_name=_("message"),
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="embedding",
    )
    # Denormalised from the message: a session's vectors are read with one index scan.
    session = models.ForeignKey(
        ChatSession,
        verbose_name=_("session"),
        on_delete=models.CASCADE,
        related_name="embeddings",
    )
    vector = models.BinaryField(_("vector"), help_text=_("Little-endian float32, unit length."))
    model = models.CharField(_("model"), max_length=200)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("message embedding")
        verbose_name_plural = _("message embeddings")
        ordering = ("message",)
        indexes = [models.Index(fields=("session",), name="motorhead_embedding_session")]

    def __str__(self) -> str:
        return f"embedding of message {self.message_id}"


# The governance models (legal holds, erasure receipts, the read audit) live in
# their own module; importing them here registers them with this app.
from .governance_models import ErasureReceipt, LegalHold, ReadAudit  # noqa: E402, F401
from .history_models import SyncStateSample  # noqa: E402, F401  (the sync states' history)
