"""The sync overview's SVG charts: drawn on the server from the database, no script, no CDN."""

from __future__ import annotations

import re
from datetime import timedelta
from xml.etree import ElementTree

import pytest
from django.urls import reverse
from django.utils import timezone

from motorhead_django import charts, history, memory
from motorhead_django.models import ChatMessage, ChatSession, SyncState

pytestmark = pytest.mark.django_db


def test_bars_scale_to_the_largest_value_and_the_svg_is_well_formed():
    svg = str(
        charts.bar_chart([charts.Bar("a", 10), charts.Bar("b & c", 5), charts.Bar("z", 0)], "T")
    )
    root = ElementTree.fromstring(svg)
    widths = [int(rect.get("width")) for rect in root.iter("{http://www.w3.org/2000/svg}rect")]
    assert widths[0] == 2 * widths[1] and widths[2] == 0
    assert "b &amp; c" in svg


def test_causes_are_told_apart():
    assert charts.cause("POST /sessions/a/memory: 503 Service Unavailable") == "HTTP 503"
    assert charts.cause("could not connect to 127.0.0.1:9") == "connection refused"
    assert charts.cause("the connection dropped before an answer") == "connection dropped"
    assert charts.cause("read timed out") == "timeout"
    assert charts.cause("something else") == "other"


def test_lag_buckets_count_pending_messages_by_age(upstream):
    session = memory.get_or_create_session("lag")
    memory.append_messages(session, [("Human", f"m{n}") for n in range(3)])
    first, second, third = ChatMessage.objects.order_by("sequence")
    ChatMessage.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(days=2))
    ChatMessage.objects.filter(pk=second.pk).update(created_at=timezone.now() - timedelta(hours=3))
    assert [bar.value for bar in charts.lag_bars()] == [1, 0, 0, 1, 1]


def test_the_overview_draws_states_lag_and_causes(admin_client, upstream):
    for n in range(3):
        memory.append_messages(memory.get_or_create_session(f"c{n}"), [("Human", "hi")])
    ChatSession.objects.filter(session_id="c0").update(
        sync_state=SyncState.FAILED,
        last_error="POST /sessions/c0/memory: 500 Internal Server Error",
    )
    ChatSession.objects.filter(session_id="c1").update(
        sync_state=SyncState.RETRYING, last_error="could not connect to 127.0.0.1:9"
    )
    html = admin_client.get(reverse("admin:motorhead_django_sync_overview")).content.decode()
    svgs = re.findall(r"<svg class=\"mh-chart\".*?</svg>", html, flags=re.S)
    assert len(svgs) == 3
    states, lag, causes = (ElementTree.fromstring(svg) for svg in svgs)
    assert states.get("aria-label") == "Sessions by sync state"
    assert "Failed: 1" in svgs[0] and "Pending: 1" in svgs[0]
    assert "?sync_state__exact=failed" in svgs[0]
    assert "HTTP 500" in svgs[2] and "connection refused" in svgs[2]
    assert "<script" not in html.split('id="content-main"')[1]


# -- sessions by state over time -----------------------------------------------------

SVG = "{http://www.w3.org/2000/svg}"
SERIES = [
    charts.Series("failed", "Failed", "mh-failed"),
    charts.Series("synced", "Synced", "mh-synced"),
]


def history_chart(points, *, gap=timedelta(minutes=10)):
    until = timezone.now()
    svg = str(
        charts.stacked_area_chart(points, SERIES, until - timedelta(hours=1), until, "T", gap=gap)
    )
    return svg, ElementTree.fromstring(svg)


def point(minutes_ago, **counts):
    return charts.Point(timezone.now() - timedelta(minutes=minutes_ago), counts)


def test_a_history_without_samples_is_still_a_well_formed_chart():
    svg, root = history_chart([])
    assert root.find(f"{SVG}desc").text == "No samples in this period."
    assert not list(root.iter(f"{SVG}polygon"))


def test_one_sample_is_a_visible_column_with_its_counts():
    svg, root = history_chart([point(5, failed=2, synced=7)])
    polygons = list(root.iter(f"{SVG}polygon"))
    assert [p.get("class") for p in polygons] == [
        "mh-chart-area mh-failed",
        "mh-chart-area mh-synced",
    ]
    xs = {float(xy.split(",")[0]) for xy in polygons[0].get("points").split()}
    assert len(xs) == 2 and max(xs) - min(xs) == 3  # not a zero-width sliver
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert "Failed: 2 now, at most 2" in titles and "Synced: 7 now, at most 7" in titles
    assert root.find(f"{SVG}desc").text.startswith("1 sample from ")


def test_many_samples_stack_and_each_point_has_a_title():
    points = [point(50 - n, failed=n % 3, synced=10 + n) for n in range(0, 50, 5)]
    svg, root = history_chart(points)
    hits = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "mh-chart-hit"]
    assert len(hits) == len(points)
    assert hits[-1].find(f"{SVG}title").text.endswith("Failed 0, Synced 55")
    # The y axis tops at the highest total; the synced area sits on the failed one.
    assert root.findall(f"{SVG}text")[0].text == "55"  # the last point: 0 failed + 55
    failed, synced = root.iter(f"{SVG}polygon")
    top_of_failed = failed.get("points").split()[: len(points)]
    bottom_of_synced = synced.get("points").split()[len(points) :][::-1]
    assert top_of_failed == bottom_of_synced
    assert "Synced: 55 now, at most 55" in svg


def test_a_stretch_without_samples_breaks_the_areas():
    points = [point(50, synced=1), point(45, synced=1), point(10, synced=1), point(5, synced=1)]
    svg, root = history_chart(points, gap=timedelta(minutes=10))
    assert len(list(root.iter(f"{SVG}polygon"))) == 2


def test_labels_are_escaped():
    series = [charts.Series("a", "<b>&", "mh-synced")]
    until = timezone.now()
    svg = str(
        charts.stacked_area_chart(
            [charts.Point(until, {"a": 1})],
            series,
            until - timedelta(hours=1),
            until,
            "<T>",
            gap=timedelta(minutes=10),
        )
    )
    ElementTree.fromstring(svg)
    assert "<b>" not in svg and "&lt;b&gt;&amp;" in svg


def test_the_overview_draws_sessions_by_state_over_time(admin_client, settings):
    settings.MOTORHEAD = {"STATE_SAMPLE_INTERVAL": 600}
    url = reverse("admin:motorhead_django_sync_overview")
    html = admin_client.get(url).content.decode()
    assert "Sessions by state over time" in html
    assert "No samples yet; the beat task records one every 10 minutes." in html
    ChatSession.objects.create(session_id="h", remote_id="h", sync_state=SyncState.FAILED)
    history.record_sample(timezone.now() - timedelta(minutes=10))
    ChatSession.objects.create(session_id="i", remote_id="i", sync_state=SyncState.SYNCED)
    history.record_sample()
    html = admin_client.get(url).content.decode()
    (svg,) = re.findall(r"<svg class=\"mh-chart mh-chart-history\".*?</svg>", html, flags=re.S)
    root = ElementTree.fromstring(svg)
    assert root.get("aria-label") == "Sessions by sync state over the last 24 hours"
    assert "Failed: 1 now, at most 1" in svg and "Synced: 1 now, at most 1" in svg
    # The table fallback, newest first, has a column per state the period saw.
    table = html.split("Sessions by state over time")[1].split("</table>")[0]
    assert 'mh-badge mh-failed">Failed' in table and 'mh-badge mh-synced">Synced' in table
    assert re.findall(r'<td class="mh-count">(\d+)</td>', table) == ["1", "1", "1", "0"]
    week = admin_client.get(url, {"history": "7d"}).content.decode()
    assert "over the last 7 days" in week and '<a href="?history=1d">24 hours</a>' in week
    assert admin_client.get(url, {"history": "nonsense"}).status_code == 200
