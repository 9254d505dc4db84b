"""The app's settings: one ``MOTORHEAD`` dict, read at access time.

Every key has a documented default in ``DEFAULTS`` and one typed property on
:class:`MotorheadSettings`. Values are read from ``django.conf.settings`` each
time a property is used, so ``override_settings`` works in tests. Validation
lives in :mod:`motorhead_django.checks`; properties here trust the checks and
only coerce.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from . import __version__

DEFAULTS: dict[str, Any] = {
    # Base URL of the Motorhead server, e.g. "http://127.0.0.1:8080" or the
    # hosted "https://api.getmetal.io/v1/motorhead". None: local-only mode.
    "URL": None,
    # Hosted (Metal) variant: sent as x-metal-api-key / x-metal-client-id.
    "API_KEY": None,
    "CLIENT_ID": None,
    # Seconds to open a connection / to wait for a response.
    "CONNECT_TIMEOUT": 3.05,
    "READ_TIMEOUT": 10.0,
    # The server's MOTORHEAD_MAX_WINDOW_SIZE. It must match the server: the
    # sync sizes and paces its batches by it.
    "WINDOW_SIZE": 12,
    # Messages per POST when pushing; at most WINDOW_SIZE + 1 (what the
    # server keeps before it compacts). None: WINDOW_SIZE // 2.
    "BATCH_SIZE": None,
    # Namespace for sessions created without one ("" is no namespace).
    "NAMESPACE": "",
    # None: sync whenever URL is set. False pauses sync with a URL set.
    "SYNC_ENABLED": None,
    # Whether the server runs with MOTORHEAD_LONG_TERM_MEMORY=true.
    "LONG_TERM_MEMORY": False,
    # Retries of a failed sync step: count, first delay and cap in seconds.
    "MAX_RETRIES": 10,
    "RETRY_BACKOFF": 2.0,
    "RETRY_BACKOFF_MAX": 600.0,
    # Seconds a push waits for the server to summarise a full window before
    # it sends more (sending sooner would lose messages from the summary).
    "COMPACTION_TIMEOUT": 30.0,
    # Most sessions one sweep enqueues.
    "SWEEP_LIMIT": 1000,
    # Seconds between sweeps in your beat schedule. A session the sweep enqueued
    # is not enqueued again for twice this, so a slow queue is not flooded.
    "SWEEP_INTERVAL": 60.0,
    # Pull a session right after a push that sent something (one GET more per push).
    "PULL_AFTER_PUSH": True,
    # Seconds since its last write for which a session counts as active: the
    # periodic pull and the drift verify visit active sessions only.
    "ACTIVE_PERIOD": 7 * 24 * 3600.0,
    # Celery queue for the sync tasks (None: Celery's default queue).
    "TASK_QUEUE": None,
    # Deleting a session locally also deletes it on the server.
    "DELETE_REMOTE": True,
    # Roles accepted from clients (None: any role, as the server does).
    "ALLOWED_ROLES": None,
    # PostgreSQL text search configuration for the local message search.
    "SEARCH_CONFIG": "english",
    # Limits on what clients may send and read (docs/security.md, "Throttles and limits").
    # Characters in one message's content:
    "MAX_CONTENT_LENGTH": 100_000,
    # Messages in one write (a batch):
    "MAX_MESSAGES_PER_REQUEST": 100,
    # Bytes of a request body, refused with a 413 before it is parsed. None: Django's
    # DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB unless you changed it).
    "MAX_REQUEST_BYTES": None,
    # Most items a page of a list may hold (REST sessions and messages, compat sessions).
    "MAX_PAGE_SIZE": 200,
    # Rates of the throttles (api/throttling.py); a key given here replaces that default
    # only, None turns a scope off.
    "THROTTLE_RATES": {
        "rest": "1200/min",
        "compat": "2400/min",
        "auth-address": "30/min",
        "auth-prefix": "10/min",
    },
    # More strings to redact from stored errors and logs (redaction.py), such as LLM keys.
    "SECRETS": (),
    "USER_AGENT": f"motorhead-django/{__version__}",
    # The Motorhead-compatible routes answer requests without an API key
    # (as a self-hosted Motorhead does). Off: a key is required.
    "COMPAT_ALLOW_ANONYMOUS": False,
    # Local-only mode: dotted path to summarize(previous, messages) -> str | None,
    # called with the messages that leave the window; or a dict (LLM_DEFAULTS keys)
    # for the built-in summariser over an OpenAI-compatible API. None: no local summary.
    "SUMMARIZER": None,
    # A dict (LLM_DEFAULTS keys) enables embeddings and semantic retrieval.
    "EMBEDDINGS": None,
    # With both URL and a SUMMARIZER dict: who writes context and tokens, "server"
    # (Motorhead's summary, taken by the pull) or "local" (the built-in summariser).
    "CONTEXT_OWNER": "server",
    # Prometheus metrics (motorhead_django.metrics; needs the `metrics` extra). Off by default.
    "METRICS": False,
    # Governance (docs/governance.md). Retention per namespace ("*": any other one):
    # {"ns": {"days": 30}} deletes sessions 30 days after their last activity,
    # {"ns": {"messages": 500}} keeps each session's newest 500. None: keep everything.
    "RETENTION": None,
    # Most sessions one retention run visits (the beat task runs again for the rest).
    "RETENTION_BATCH": 500,
    # Dotted path of redact(role, content) -> str, applied to what is pushed,
    # summarised or embedded. None: messages leave as written.
    "REDACT": None,
    # Also store the redacted text locally (the original is then never kept).
    "REDACT_LOCAL": False,
    # Record who read a conversation in the admin or, as a non-owner, through REST.
    "READ_AUDIT": True,
    # Days the read audit is kept (purged by the retention run). None: kept forever.
    "READ_AUDIT_DAYS": None,
    # Seconds between beat's samples of sessions by sync state (the overview's history
    # chart); keep it equal to beat_schedule(states=...). Samples older than
    # STATE_SAMPLE_DAYS are pruned by the same task.
    "STATE_SAMPLE_INTERVAL": 300.0,
    "STATE_SAMPLE_DAYS": 30,
}

# Keys of the SUMMARIZER and EMBEDDINGS dicts. MAX_TOKENS and BATCH_TOKENS are
# Motorhead's (4096 - 512 - 230 = 3354 tokens of new lines per call).
LLM_DEFAULTS: dict[str, Any] = {
    "BASE_URL": None,
    "API_KEY": None,
    "MODEL": None,
    "MAX_TOKENS": 512,
    "BATCH_TOKENS": 3354,
    # Texts per embeddings call.
    "BATCH_SIZE": 64,
    "TIMEOUT": 60.0,
    "RETRIES": 8,
}
LLM_REQUIRED = ("BASE_URL", "MODEL")


@dataclass(frozen=True)
class LLMSettings:
    """One OpenAI-compatible endpoint: ``MOTORHEAD["SUMMARIZER"]`` or ``["EMBEDDINGS"]``."""

    BASE_URL: str
    API_KEY: str | None
    MODEL: str
    MAX_TOKENS: int
    BATCH_TOKENS: int
    BATCH_SIZE: int
    TIMEOUT: float
    RETRIES: int

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> LLMSettings:
        merged = {**LLM_DEFAULTS, **value}
        return cls(
            BASE_URL=str(merged["BASE_URL"]).rstrip("/"),
            API_KEY=merged["API_KEY"] or None,
            MODEL=str(merged["MODEL"]),
            MAX_TOKENS=int(merged["MAX_TOKENS"]),
            BATCH_TOKENS=int(merged["BATCH_TOKENS"]),
            BATCH_SIZE=int(merged["BATCH_SIZE"]),
            TIMEOUT=float(merged["TIMEOUT"]),
            RETRIES=int(merged["RETRIES"]),
        )


class MotorheadSettings:
    """Typed access to ``settings.MOTORHEAD``, with defaults."""

    def _get(self, key: str) -> Any:
        user = getattr(settings, "MOTORHEAD", None)
        if isinstance(user, dict) and key in user:
            return user[key]
        return DEFAULTS[key]

    @property
    def raw(self) -> Any:
        """The ``MOTORHEAD`` setting as the project wrote it (may be missing or wrong)."""
        return getattr(settings, "MOTORHEAD", {})

    @property
    def URL(self) -> str | None:
        url = self._get("URL")
        return url.rstrip("/") if url else None

    @property
    def API_KEY(self) -> str | None:
        return self._get("API_KEY") or None

    @property
    def CLIENT_ID(self) -> str | None:
        return self._get("CLIENT_ID") or None

    @property
    def CONNECT_TIMEOUT(self) -> float:
        return float(self._get("CONNECT_TIMEOUT"))

    @property
    def READ_TIMEOUT(self) -> float:
        return float(self._get("READ_TIMEOUT"))

    @property
    def WINDOW_SIZE(self) -> int:
        return int(self._get("WINDOW_SIZE"))

    @property
    def BATCH_SIZE(self) -> int:
        size = self._get("BATCH_SIZE")
        return int(size) if size is not None else max(1, self.WINDOW_SIZE // 2)

    @property
    def NAMESPACE(self) -> str:
        return self._get("NAMESPACE") or ""

    @property
    def SYNC_ENABLED(self) -> bool:
        enabled = self._get("SYNC_ENABLED")
        return bool(self.URL) if enabled is None else bool(enabled and self.URL)

    @property
    def LONG_TERM_MEMORY(self) -> bool:
        return bool(self._get("LONG_TERM_MEMORY"))

    @property
    def MAX_RETRIES(self) -> int:
        return int(self._get("MAX_RETRIES"))

    @property
    def RETRY_BACKOFF(self) -> float:
        return float(self._get("RETRY_BACKOFF"))

    @property
    def RETRY_BACKOFF_MAX(self) -> float:
        return float(self._get("RETRY_BACKOFF_MAX"))

    @property
    def COMPACTION_TIMEOUT(self) -> float:
        return float(self._get("COMPACTION_TIMEOUT"))

    @property
    def SWEEP_LIMIT(self) -> int:
        return int(self._get("SWEEP_LIMIT"))

    @property
    def SWEEP_INTERVAL(self) -> float:
        return float(self._get("SWEEP_INTERVAL"))

    @property
    def PULL_AFTER_PUSH(self) -> bool:
        return bool(self._get("PULL_AFTER_PUSH"))

    @property
    def ACTIVE_PERIOD(self) -> float:
        return float(self._get("ACTIVE_PERIOD"))

    @property
    def TASK_QUEUE(self) -> str | None:
        return self._get("TASK_QUEUE") or None

    @property
    def DELETE_REMOTE(self) -> bool:
        return bool(self._get("DELETE_REMOTE"))

    @property
    def ALLOWED_ROLES(self) -> frozenset[str] | None:
        roles = self._get("ALLOWED_ROLES")
        return None if roles is None else frozenset(roles)

    @property
    def SEARCH_CONFIG(self) -> str:
        return str(self._get("SEARCH_CONFIG"))

    @property
    def MAX_CONTENT_LENGTH(self) -> int:
        return int(self._get("MAX_CONTENT_LENGTH"))

    @property
    def MAX_MESSAGES_PER_REQUEST(self) -> int:
        return int(self._get("MAX_MESSAGES_PER_REQUEST"))

    @property
    def MAX_REQUEST_BYTES(self) -> int | None:
        limit = self._get("MAX_REQUEST_BYTES")
        if limit is None:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return None if limit is None else int(limit)

    @property
    def MAX_PAGE_SIZE(self) -> int:
        return int(self._get("MAX_PAGE_SIZE"))

    @property
    def THROTTLE_RATES(self) -> dict[str, str | None]:
        rates = dict(DEFAULTS["THROTTLE_RATES"])
        user = self._get("THROTTLE_RATES")
        if isinstance(user, dict):
            rates.update(user)
        return rates

    @property
    def SECRETS(self) -> tuple[str, ...]:
        return tuple(self._get("SECRETS") or ())

    @property
    def USER_AGENT(self) -> str:
        return str(self._get("USER_AGENT"))

    @property
    def COMPAT_ALLOW_ANONYMOUS(self) -> bool:
        return bool(self._get("COMPAT_ALLOW_ANONYMOUS"))

    @property
    def SUMMARIZER(self) -> str | None:
        """The dotted path of your own summariser (None for the built-in one)."""
        value = self._get("SUMMARIZER")
        return value if isinstance(value, str) and value else None

    @property
    def BUILTIN_SUMMARIZER(self) -> LLMSettings | None:
        """The built-in summariser's endpoint, when ``SUMMARIZER`` is a dict."""
        value = self._get("SUMMARIZER")
        return LLMSettings.from_dict(value) if isinstance(value, dict) else None

    @property
    def EMBEDDINGS(self) -> LLMSettings | None:
        value = self._get("EMBEDDINGS")
        return LLMSettings.from_dict(value) if isinstance(value, dict) else None

    @property
    def CONTEXT_OWNER(self) -> str:
        return str(self._get("CONTEXT_OWNER"))

    @property
    def SUMMARIZES_LOCALLY(self) -> bool:
        """Whether the built-in summariser writes context and tokens (see CONTEXT_OWNER)."""
        if self.BUILTIN_SUMMARIZER is None:
            return False
        return not self.SYNC_ENABLED or self.CONTEXT_OWNER == "local"

    @property
    def METRICS(self) -> bool:
        return bool(self._get("METRICS"))

    @property
    def RETENTION(self) -> dict[str, dict[str, int]]:
        return dict(self._get("RETENTION") or {})

    @property
    def RETENTION_BATCH(self) -> int:
        return int(self._get("RETENTION_BATCH"))

    @property
    def REDACT(self) -> str | None:
        return self._get("REDACT") or None

    @property
    def REDACT_LOCAL(self) -> bool:
        return bool(self._get("REDACT_LOCAL"))

    @property
    def READ_AUDIT(self) -> bool:
        return bool(self._get("READ_AUDIT"))

    @property
    def READ_AUDIT_DAYS(self) -> int | None:
        days = self._get("READ_AUDIT_DAYS")
        return None if days is None else int(days)

    @property
    def STATE_SAMPLE_INTERVAL(self) -> float:
        return float(self._get("STATE_SAMPLE_INTERVAL"))

    @property
    def STATE_SAMPLE_DAYS(self) -> int:
        return int(self._get("STATE_SAMPLE_DAYS"))


motorhead_settings = MotorheadSettings()
