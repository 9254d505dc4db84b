"""Progress of long commands: a rich bar on a terminal, plain periodic lines elsewhere."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import OutputWrapper

from motorhead_django import engine, memory, progress
from motorhead_django.progress import Progress

pytestmark = pytest.mark.django_db


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_prints_items_and_periodic_lines_with_rate_and_eta(monkeypatch):
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    out = StringIO()
    with Progress(OutputWrapper(out), 3) as bar:
        for n in range(3):
            bar.step(f"item {n}")
    lines = out.getvalue().splitlines()
    assert lines[0] == "item 0"
    assert lines[1].startswith("Progress: 1/3 session(s), ") and "/s, ETA 0:00:" in lines[1]
    # No status line after the last item: the command's own "Done" line follows.
    assert lines[-1] == "item 2" and len(lines) == 5


def test_verbosity_zero_prints_failures_only(monkeypatch):
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    out = StringIO()
    with Progress(OutputWrapper(out), 3, verbosity=0) as bar:
        bar.step("fine")
        bar.step("broken", failed=True)
        bar.step("fine")
    assert out.getvalue().splitlines() == ["broken"]


def test_item_lines_from_a_higher_verbosity():
    out = StringIO()
    with Progress(OutputWrapper(out), 2, item_verbosity=2) as bar:
        bar.step("quiet")
        bar.step("loud", failed=True)
    assert out.getvalue().splitlines() == ["loud"]


def test_a_terminal_gets_a_bar_with_count_rate_and_eta():
    out = Terminal()
    with Progress(OutputWrapper(out), 4, what="session") as bar:
        assert bar._bar is not None
        for n in range(4):
            bar.step(f"item {n}", failed=n == 2)
    text = out.getvalue()
    assert "4/4" in text and "/s" in text and "ETA" in text
    # Items only at -v 2; failures always, above the bar.
    assert "item 2" in text and "item 1" not in text


def test_motorhead_sync_verify_reports_progress_when_not_a_terminal(upstream, monkeypatch):
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    for n in range(3):
        session = memory.get_or_create_session(f"p{n}")
        memory.append_messages(session, [("Human", "hi")])
        engine.push(session.pk)
    out = StringIO()
    call_command("motorhead_sync", "--verify", stdout=out)
    text = out.getvalue()
    assert "[1/3] p0: in step" in text and "[3/3] p2: in step" in text
    assert "Progress: 2/3 session(s)" in text
    assert "Done: 3 session(s), 0 failed." in text
    quiet = StringIO()
    call_command("motorhead_sync", "--verify", "-v", "0", stdout=quiet)
    assert "in step" not in quiet.getvalue() and "Progress" not in quiet.getvalue()


def test_motorhead_sync_push_draws_a_bar_on_a_terminal(upstream):
    for n in range(3):
        memory.append_messages(memory.get_or_create_session(f"t{n}"), [("Human", "hi")])
    out = Terminal()
    call_command("motorhead_sync", stdout=out)
    text = out.getvalue()
    assert "3/3" in text and "ETA" in text
    assert "Done: 3 message(s) pushed, 3 session(s) synced, 0 not." in text


def test_motorhead_import_progress_per_namespace(upstream, monkeypatch):
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    for n in range(4):
        upstream.preload(f"imp{n}", [("Human", "x")])
    out = StringIO()
    call_command("motorhead_import", stdout=out)
    text = out.getvalue()
    assert "session(s) listed" in text and "Progress: 1/4 session(s)" in text
    assert "imp0: 1 message(s)" not in text  # per-session lines need -v 2
    verbose = StringIO()
    call_command("motorhead_import", "--refresh", "-v", "2", stdout=verbose)
    assert "imp0: " in verbose.getvalue()


# -- export and retention: progress on stderr --------------------------------------------


def _owned_sessions(count: int):
    from django.contrib.auth import get_user_model

    owner = get_user_model().objects.create_user("ann")
    for n in range(count):
        session = memory.create_session(f"x{n}", owner=owner)
        memory.append_messages(session, [("Human", "hi"), ("AI", "hello")])
    return owner


def test_motorhead_export_progress_goes_to_stderr_so_stdout_stays_an_export(monkeypatch):
    import json

    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    _owned_sessions(3)
    out, err = StringIO(), StringIO()
    call_command("motorhead_export", "--user", "ann", stdout=out, stderr=err)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["type"] for r in records].count("session") == 3 and records[0]["type"] == "export"
    assert "Progress: 1/3 session(s), " in err.getvalue() and "ETA" in err.getvalue()
    assert "x0: 2 message(s)" not in err.getvalue()  # each session only at -v 2
    verbose = StringIO()
    call_command("motorhead_export", "--user", "ann", "-v", "2", stdout=StringIO(), stderr=verbose)
    assert "x0: 2 message(s)" in verbose.getvalue() and "x2: 2 message(s)" in verbose.getvalue()
    quiet = StringIO()
    call_command("motorhead_export", "--user", "ann", "-v", "0", stdout=StringIO(), stderr=quiet)
    assert quiet.getvalue() == ""


def test_motorhead_export_draws_its_bar_on_a_terminals_stderr(tmp_path):
    _owned_sessions(3)
    err = Terminal()
    path = tmp_path / "ann.md"
    call_command(
        "motorhead_export",
        "--user",
        "ann",
        "--format",
        "markdown",
        "--output",
        str(path),
        stdout=StringIO(),
        stderr=err,
    )
    assert "3/3" in err.getvalue() and "ETA" in err.getvalue() and "/s" in err.getvalue()
    assert "\x1b" not in path.read_text() and path.read_text().count("## Session") == 3


def test_motorhead_retention_reports_progress_on_stderr(settings, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from motorhead_django.models import ChatSession

    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    settings.MOTORHEAD = {"RETENTION": {"": {"days": 1}}}
    for n in range(3):
        memory.append_messages(memory.get_or_create_session(f"old{n}"), [("Human", "hi")])
    ChatSession.objects.update(updated_at=timezone.now() - timedelta(days=3))
    out, err = StringIO(), StringIO()
    call_command("motorhead_retention", "-v", "2", stdout=out, stderr=err)
    assert out.getvalue().startswith("Deleted 3 session(s)")
    lines = err.getvalue().splitlines()
    assert lines[0].endswith("(old0): deleted, 1 message(s)")
    assert lines[1].startswith("Progress: 1/3 session(s), ") and "ETA" in lines[1]
    assert not ChatSession.objects.exists()


def test_motorhead_retention_at_verbosity_zero_is_silent_on_stderr(settings):
    from datetime import timedelta

    from django.utils import timezone

    from motorhead_django.models import ChatSession

    settings.MOTORHEAD = {"RETENTION": {"": {"days": 1}}}
    memory.append_messages(memory.get_or_create_session("old"), [("Human", "hi")])
    ChatSession.objects.update(updated_at=timezone.now() - timedelta(days=3))
    err = StringIO()
    call_command("motorhead_retention", "-v", "0", stdout=StringIO(), stderr=err)
    assert err.getvalue() == "" and not ChatSession.objects.exists()
