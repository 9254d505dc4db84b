"""Sessions by sync state over time: beat's sampling task and the overview's read of it.

Every ``STATE_SAMPLE_INTERVAL`` seconds the ``motorhead_django.sample_states``
beat task counts sessions by state (one GROUP BY query), stores the counts as
one :class:`SyncStateSample` row and prunes rows older than
``STATE_SAMPLE_DAYS``. The overview reads one period of samples with one range
scan of the ``taken_at`` index and draws them with
:func:`motorhead_django.charts.stacked_area_chart`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db.models import Count
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.safestring import SafeString
from django.utils.timesince import timesince
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import charts
from .checks import _id, _is_number, _user_settings
from .conf import DEFAULTS, motorhead_settings
from .models import ChatSession, SyncState, SyncStateSample

# Most points one chart draws: a period's samples are thinned to the last one of
# each of this many equal slices of time. 288 keeps every default sample (one per
# 5 minutes) of the 24-hour period.
MAX_POINTS = 288
PERIODS = {
    "1d": (timedelta(days=1), _("24 hours")),
    "7d": (timedelta(days=7), _("7 days")),
    "30d": (timedelta(days=30), _("30 days")),
}
DEFAULT_PERIOD = "1d"
# Bottom to top: the states that need someone sit on the baseline, where they read best.
STACK = (
    SyncState.FAILED,
    SyncState.IN_DOUBT,
    SyncState.RETRYING,
    SyncState.DRIFTED,
    SyncState.PENDING,
    SyncState.DELETING,
    SyncState.LOCAL,
    SyncState.SYNCED,
)


def counts_by_state() -> dict[str, int]:
    """Sessions per sync state, every state present, in one GROUP BY query."""
    found = ChatSession.objects.order_by().values_list("sync_state").annotate(n=Count("pk"))
    return {**dict.fromkeys(SyncState.values, 0), **dict(found)}


def record_sample(now: datetime | None = None) -> SyncStateSample:
    """Store the counts by state taken now, then prune samples past their retention."""
    now = now or timezone.now()
    sample = SyncStateSample.objects.create(taken_at=now, counts=counts_by_state())
    prune(now)
    return sample


def prune(now: datetime) -> int:
    """Delete samples older than ``STATE_SAMPLE_DAYS``; returns how many went."""
    cutoff = now - timedelta(days=motorhead_settings.STATE_SAMPLE_DAYS)
    # A model with no relations and no delete receivers: Django sends one DELETE.
    deleted, _by_model = SyncStateSample.objects.filter(taken_at__lt=cutoff).delete()
    return deleted


@shared_task(name="motorhead_django.sample_states", ignore_result=True)
def sample_states() -> int:
    """Beat's sampling of sessions by state; returns the new sample's primary key."""
    return record_sample().pk


def samples(since: datetime, until: datetime, points: int = MAX_POINTS) -> list[charts.Point]:
    """The samples taken in ``[since, until]``, thinned to at most ``points``: the last of
    each equal slice of the period. One query, a range scan of the ``taken_at`` index."""
    width = (until - since) / points
    rows = (
        SyncStateSample.objects.filter(taken_at__gte=since, taken_at__lte=until)
        .order_by("taken_at")
        .values_list("taken_at", "counts")
    )
    kept: dict[int, charts.Point] = {}
    for taken_at, counts in rows.iterator():
        # A sample taken exactly at ``until`` belongs to the last slice.
        kept[min(int((taken_at - since) / width), points - 1)] = charts.Point(taken_at, counts)
    return list(kept.values())


def every(seconds: float) -> str:
    """An interval in words: "5 minutes", "90 seconds", "1 hour"."""
    whole = max(1, round(seconds))
    if whole % 3600 == 0:
        return ngettext("%d hour", "%d hours", whole // 3600) % (whole // 3600)
    if whole % 60 == 0:
        return ngettext("%d minute", "%d minutes", whole // 60) % (whole // 60)
    return ngettext("%d second", "%d seconds", whole) % whole


@dataclass
class StateHistory:
    """What the overview's "Sessions by state over time" section shows."""

    period: str
    periods: list[tuple[str, str]]
    chart: SafeString | None = None
    states: list[tuple[str, str]] = field(default_factory=list)
    rows: list[tuple[str, list[int]]] = field(default_factory=list)
    empty: str = ""


def overview(period: str | None, now: datetime | None = None) -> StateHistory:
    """The chart of one period (``PERIODS`` key; anything else means the default)."""
    key = period if period in PERIODS else DEFAULT_PERIOD
    length, label = PERIODS[key]
    until = now or timezone.now()
    since = until - length
    interval = motorhead_settings.STATE_SAMPLE_INTERVAL
    history = StateHistory(key, [(name, str(text)) for name, (_len, text) in PERIODS.items()])
    points = samples(since, until)
    if not points:
        history.empty = _empty_message(interval, str(label))
        return history
    labels = dict(SyncState.choices)
    shown = [s for s in STACK if any(point.counts.get(s, 0) for point in points)] or [STACK[-1]]
    history.states = [(state, str(labels[state])) for state in shown]
    history.chart = charts.stacked_area_chart(
        points,
        [charts.Series(state, str(labels[state]), f"mh-{state}") for state in shown],
        since,
        until,
        str(_("Sessions by sync state over the last %(period)s") % {"period": label}),
        # Samples further apart than this were not taken (beat was down): the areas break.
        gap=timedelta(seconds=2 * interval) + length / MAX_POINTS,
    )
    history.rows = [
        (
            date_format(timezone.localtime(point.at), "DATETIME_FORMAT"),
            [int(point.counts.get(state, 0)) for state in shown],
        )
        for point in reversed(points)
    ]
    return history


def _empty_message(interval: float, period: str) -> str:
    latest = (
        SyncStateSample.objects.order_by("-taken_at").values_list("taken_at", flat=True).first()
    )
    if latest is None:
        return str(_("No samples yet; the beat task records one every %(every)s.")) % {
            "every": every(interval)
        }
    return str(
        _(
            "No sample in the last %(period)s (the last one is %(age)s old); the beat task "
            "records one every %(every)s: is celery beat running?"
        )
    ) % {"period": period, "age": timesince(latest), "every": every(interval)}


# -- system checks (docs/settings.md): E090, E091, W090 -------------------------------


@register(Tags.compatibility)
def check_state_samples(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings() or {}
    messages: list[CheckMessage] = []
    interval = user.get("STATE_SAMPLE_INTERVAL", DEFAULTS["STATE_SAMPLE_INTERVAL"])
    if not (_is_number(interval) and interval > 0):
        messages.append(
            Error(
                "MOTORHEAD['STATE_SAMPLE_INTERVAL'] must be a positive number of seconds, "
                f"not {interval!r}.",
                id=_id("E090"),
            )
        )
    days = user.get("STATE_SAMPLE_DAYS", DEFAULTS["STATE_SAMPLE_DAYS"])
    if not (isinstance(days, int) and not isinstance(days, bool) and days >= 1):
        messages.append(
            Error(
                f"MOTORHEAD['STATE_SAMPLE_DAYS'] must be a whole number >= 1, not {days!r}.",
                hint="Samples are always pruned: the history of states is bounded.",
                id=_id("E091"),
            )
        )
    return messages


@register(Tags.compatibility)
def check_state_sample_schedule(**kwargs: Any) -> list[CheckMessage]:
    """The beat entry and the setting agree (the overview states the interval and breaks
    its areas where samples are missing)."""
    interval = (_user_settings() or {}).get(
        "STATE_SAMPLE_INTERVAL", DEFAULTS["STATE_SAMPLE_INTERVAL"]
    )
    entries = getattr(settings, "CELERY_BEAT_SCHEDULE", None)
    if not _is_number(interval) or not isinstance(entries, dict):
        return []
    messages: list[CheckMessage] = []
    for name, entry in entries.items():
        if not isinstance(entry, dict) or entry.get("task") != sample_states.name:
            continue
        schedule = entry.get("schedule")
        seconds = schedule.total_seconds() if isinstance(schedule, timedelta) else schedule
        if _is_number(seconds) and seconds != interval:
            messages.append(
                Warning(
                    f"CELERY_BEAT_SCHEDULE[{name!r}] samples every {seconds:g} s but "
                    f"MOTORHEAD['STATE_SAMPLE_INTERVAL'] is {interval:g} s.",
                    hint="Pass the same number to beat_schedule(states=...) and the setting.",
                    id=_id("W090"),
                )
            )
    return messages
