"""The sync overview's SVG charts: drawn on the server from the database, no script, no CDN."""

from __future__ import annotations

import re
from datetime import timedelta
from xml.etree import ElementTree

import pytest
from django.urls import reverse
from django.utils import timezone

from motorhead_django import charts, memory
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
