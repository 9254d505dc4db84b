"""Server-rendered SVG charts for the admin's sync overview (no JavaScript, no CDN).

A chart is a list of ``Bar`` rows drawn as a horizontal bar chart; the
figures behind them are read here with one aggregate query each. Sessions by
state over time are ``Point`` samples drawn as stacked areas; the samples are
read by :mod:`motorhead_django.history`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from django.db.models import Count, Q
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

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


# -- sessions by state over time -------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One sample: when, and a count per series key."""

    at: datetime
    counts: dict[str, int]


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    css: str = ""  # mh-<state> colours the area like the badges and the bars


def stacked_area_chart(
    points: list[Point],
    series: list[Series],
    since: datetime,
    until: datetime,
    title: str,
    *,
    gap: timedelta,
    width: int = 560,
) -> SafeString:
    """Series stacked over time as inline SVG areas, the first series at the bottom.

    The time axis runs from ``since`` to ``until``; points further apart than ``gap``
    are drawn as separate areas, so a stretch without samples shows as a blank. Every
    point has a hover column whose ``<title>`` reads its counts, every area a
    ``<title>`` with its latest and highest value, and ``<desc>`` says it in words.
    """
    left, top, plot_height, axis, legend_row = 44, 8, 160, 18, 18
    plot_width = width - left - 8
    per_row = 4
    legend_top = top + plot_height + axis + 6
    height = legend_top + legend_row * -(-len(series) // per_row)
    highest = max((sum(p.counts.get(s.key, 0) for s in series) for p in points), default=0) or 1
    span = (until - since).total_seconds() or 1.0

    def x(at: datetime) -> float:
        return round(left + plot_width * (at - since).total_seconds() / span, 1)

    def y(value: float) -> float:
        return round(top + plot_height * (1 - value / highest), 1)

    shapes = []
    for run in _runs(points, gap):
        xs = [x(p.at) for p in run]
        if len(run) == 1:  # a lone sample: a thin column, so it shows
            xs = [xs[0] - 1.5, xs[0] + 1.5]
            run = [run[0], run[0]]
        below = [0] * len(run)
        for item in series:
            above = [b + p.counts.get(item.key, 0) for b, p in zip(below, run, strict=True)]
            if any(a != b for a, b in zip(above, below, strict=True)):
                upper = zip(xs, map(y, above), strict=True)
                lower = reversed(list(zip(xs, map(y, below), strict=True)))
                outline = [*upper, *lower]
                shapes.append((" ".join(f"{px:g},{py:g}" for px, py in outline), item.css))
            below = above
    latest = points[-1].counts if points else {}
    summaries = {
        item.key: _("%(label)s: %(latest)d now, at most %(most)d")
        % {
            "label": item.label,
            "latest": latest.get(item.key, 0),
            "most": max((p.counts.get(item.key, 0) for p in points), default=0),
        }
        for item in series
    }
    areas = format_html_join(
        "",
        '<polygon points="{}" class="mh-chart-area {}"></polygon>',
        shapes,
    )
    # Hover columns, one per point, as wide as the space to its neighbours.
    edges = [left, *((x(a.at) + x(b.at)) / 2 for a, b in pairwise(points)), left + plot_width]
    columns = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill-opacity="0" class="mh-chart-hit">'
        "<title>{}</title></rect>",
        (
            (
                round(edges[i], 1),
                top,
                max(round(edges[i + 1] - edges[i], 1), 1),
                plot_height,
                _point_title(point, series),
            )
            for i, point in enumerate(points)
        ),
    )
    legend = format_html_join(
        "",
        '<rect x="{}" y="{}" width="10" height="10" class="mh-chart-bar {}">'
        '<title>{}</title></rect><text x="{}" y="{}" class="mh-chart-label">{} {}</text>',
        (
            (
                left + (i % per_row) * (plot_width // per_row),
                legend_top + (i // per_row) * legend_row,
                item.css,
                summaries[item.key],
                left + (i % per_row) * (plot_width // per_row) + 14,
                legend_top + (i // per_row) * legend_row + 9,
                item.label,
                latest.get(item.key, 0),
            )
            for i, item in enumerate(series)
        ),
    )
    long_period = until - since > timedelta(days=1)
    ticks = format_html_join(
        "",
        '<text x="{}" y="{}" text-anchor="{}" class="mh-chart-label">{}</text>',
        (
            (
                x(at),
                top + plot_height + 14,
                anchor,
                date_format(timezone.localtime(at), "M j" if long_period else "H:i"),
            )
            for at, anchor in (
                (since, "start"),
                (since + (until - since) / 2, "middle"),
                (until, "end"),
            )
        ),
    )
    description = (
        ngettext(
            "%(count)d sample from %(first)s to %(last)s; latest: %(now)s",
            "%(count)d samples from %(first)s to %(last)s; latest: %(now)s",
            len(points),
        )
        % {
            "count": len(points),
            "first": _when(points[0].at),
            "last": _when(points[-1].at),
            "now": ", ".join(f"{item.label} {latest.get(item.key, 0)}" for item in series),
        }
        if points
        else _("No samples in this period.")
    )
    return format_html(
        '<svg class="mh-chart mh-chart-history" role="img" aria-label="{}" width="{}" height="{}" '
        'viewBox="0 0 {} {}" xmlns="http://www.w3.org/2000/svg"><title>{}</title><desc>{}</desc>'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" class="mh-chart-axis"></line>'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" class="mh-chart-grid"></line>'
        '<text x="{}" y="{}" text-anchor="end" class="mh-chart-label">{}</text>'
        '<text x="{}" y="{}" text-anchor="end" class="mh-chart-label">0</text>'
        "{}{}{}{}</svg>",
        title,
        width,
        height,
        width,
        height,
        title,
        description,
        left,
        top + plot_height,
        left + plot_width,
        top + plot_height,
        left,
        top,
        left + plot_width,
        top,
        left - 4,
        top + 4,
        highest,
        left - 4,
        top + plot_height,
        areas,
        columns,
        ticks,
        legend,
    )


def _runs(points: list[Point], gap: timedelta) -> list[list[Point]]:
    """The points split where two are further apart than ``gap``."""
    runs: list[list[Point]] = []
    for point in points:
        if runs and point.at - runs[-1][-1].at <= gap:
            runs[-1].append(point)
        else:
            runs.append([point])
    return runs


def _when(at: datetime) -> str:
    return date_format(timezone.localtime(at), "DATETIME_FORMAT")


def _point_title(point: Point, series: list[Series]) -> str:
    counts = ", ".join(f"{item.label} {point.counts.get(item.key, 0)}" for item in series)
    return f"{_when(point.at)}: {counts}"
