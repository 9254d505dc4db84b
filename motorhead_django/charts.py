"""Server-rendered SVG charts for the admin's sync overview (no JavaScript, no CDN).

A chart is a list of ``Bar`` rows drawn as a horizontal bar chart; the
figures behind them are read here with one aggregate query each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from .models import ChatMessage, ChatSession, SyncState

# Failing sessions whose errors are classified (the most recently updated).
CAUSE_SAMPLE = 5000
_STATUS = re.compile(r"\b([45]\d\d)\b")
_AGE_BUCKETS = (
    (_("under 1 minute"), timedelta(minutes=1)),
    (_("1–10 minutes"), timedelta(minutes=10)),
    (_("10–60 minutes"), timedelta(hours=1)),
    (_("1–24 hours"), timedelta(days=1)),
    (_("over a day"), None),
)


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    css: str = ""  # an extra class for the bar (mh-<state> colours it like the badges)
    href: str = ""


def bar_chart(bars: list[Bar], title: str, *, width: int = 560) -> SafeString:
    """A horizontal bar chart as inline SVG, bars scaled to the largest value."""
    row, label_width, value_width = 22, 150, 60
    plot = width - label_width - value_width
    top = max((bar.value for bar in bars), default=0) or 1
    height = row * max(len(bars), 1) + 4
    rows = []
    for index, bar in enumerate(bars):
        y = index * row + 2
        length = round(plot * bar.value / top) if bar.value else 0
        rows.append(
            (
                bar.href or "#",
                y + 15,
                bar.label,
                label_width,
                y + 3,
                max(length, 1 if bar.value else 0),
                bar.css,
                bar.label,
                bar.value,
                label_width + length + 6,
                y + 15,
                bar.value,
            )
        )
    body = format_html_join(
        "",
        '<a href="{}"><text x="0" y="{}" class="mh-chart-label">{}</text>'
        '<rect x="{}" y="{}" height="16" width="{}" class="mh-chart-bar {}">'
        "<title>{}: {}</title></rect>"
        '<text x="{}" y="{}" class="mh-chart-value">{}</text></a>',
        rows,
    )
    return format_html(
        '<svg class="mh-chart" role="img" aria-label="{}" width="{}" height="{}" '
        'viewBox="0 0 {} {}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>{}</svg>',
        title,
        width,
        height,
        width,
        height,
        title,
        body,
    )


def state_bars(counts: dict[str, int], url: str) -> list[Bar]:
    """Sessions per state, each bar linking to the changelist filtered by it."""
    return [
        Bar(
            str(label),
            counts.get(state, 0),
            f"mh-{state}",
            f"{url}?sync_state__exact={state}",
        )
        for state, label in SyncState.choices
    ]


def lag_bars() -> list[Bar]:
    """Pending messages by age, in one query."""
    now = timezone.now()
    aggregates = {}
    lower = None
    for index, (_label, upper) in enumerate(_AGE_BUCKETS):
        condition = Q()
        if upper is not None:
            condition &= Q(created_at__gt=now - upper)
        if lower is not None:
            condition &= Q(created_at__lte=now - lower)
        aggregates[f"b{index}"] = Count("pk", filter=condition)
        lower = upper
    found = ChatMessage.objects.pending().aggregate(**aggregates)
    return [
        Bar(str(label), found[f"b{index}"], "mh-pending" if index < 2 else "mh-retrying")
        for index, (label, _upper) in enumerate(_AGE_BUCKETS)
    ]


def cause(error: str) -> str:
    """What kind of failure a stored ``last_error`` is: an HTTP status, or the transport's."""
    lowered = error.lower()
    if "could not connect" in lowered or "connection refused" in lowered:
        return "connection refused"
    if "dropped" in lowered or "disconnect" in lowered:
        return "connection dropped"
    status = _STATUS.search(error)
    if status:
        return f"HTTP {status.group(1)}"
    if "timed out" in lowered or "timeout" in lowered:
        return "timeout"
    return "other"


def cause_bars() -> list[Bar]:
    """Failing and retrying sessions by cause, the most frequent first."""
    errors = (
        ChatSession.objects.filter(sync_state__in=(SyncState.FAILED, SyncState.RETRYING))
        .exclude(last_error="")
        .order_by("-updated_at")
        .values_list("last_error", flat=True)[:CAUSE_SAMPLE]
    )
    tally: dict[str, int] = {}
    for error in errors:
        key = cause(error)
        tally[key] = tally.get(key, 0) + 1
    ordered = sorted(tally.items(), key=lambda item: (-item[1], item[0]))
    return [Bar(label, value, "mh-failed") for label, value in ordered]
