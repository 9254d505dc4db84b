"""The sync commands: motorhead_push, _pull, _verify, _rehydrate, and the motorhead_sync alias."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from motorhead_django import engine, memory
from motorhead_django.models import ChatSession, SyncState

pytestmark = pytest.mark.django_db


def write(session_id: str, *texts: str, namespace: str | None = None) -> ChatSession:
    kwargs = {} if namespace is None else {"namespace": namespace}
    session = memory.get_or_create_session(session_id, **kwargs)
    memory.append_messages(session, [("Human", text) for text in texts])
    return session


def run(name: str, *args: str) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_push_drains_pending_sessions_and_leaves_failed_ones_unless_asked(upstream):
    write("a", "one", "two")
    failed = write("b", "three")
    ChatSession.objects.filter(pk=failed.pk).update(sync_state=SyncState.FAILED)
    out = run("motorhead_push")
    assert "Pushing 1 session(s)" in out and "[1/1] a: 2 message(s) in 1 batch(es)" in out
    assert "Done: 2 message(s) pushed, 1 session(s) synced, 0 not." in out
    assert upstream.stored_messages("b") == []
    out = run("motorhead_push", "--include-failed")
    assert "[1/1] b: 1 message(s)" in out
    assert [m["content"] for m in upstream.stored_messages("b")] == ["three"]


def test_push_exits_1_when_a_session_is_left_unsynced(upstream):
    write("down", "hi")
    upstream.faults.fail_rate = 1.0
    with pytest.raises(CommandError, match=r"1 session\(s\) still not synced") as caught:
        run("motorhead_push", "--session", "down")
    assert caught.value.returncode == 1


def test_pull_brings_the_servers_new_messages(upstream):
    session = write("chat", "hi")
    engine.push(session.pk)
    upstream.preload("chat", [("AI", "hello")])
    assert "[1/1] chat: 1 new message(s)" in run("motorhead_pull")
    assert [m.content for m in memory.history(session)][-1] == "hello"


def test_verify_exits_1_naming_the_drifted_sessions(upstream):
    for name in ("kept", "lost"):
        engine.push(write(name, "x", namespace="team").pk)
    assert "kept: in step" in run("motorhead_verify")
    upstream.wipe()
    with pytest.raises(CommandError, match=r"2 session\(s\) drifted: team/kept, team/lost\."):
        run("motorhead_verify")
    assert set(ChatSession.objects.values_list("sync_state", flat=True)) == {SyncState.DRIFTED}


def test_rehydrate_drifted_only_rebuilds_those_alone(upstream):
    drifted, fine = write("drifted", "a", "b"), write("fine", "c")
    for session in (drifted, fine):
        engine.push(session.pk)
    upstream.wipe()
    ChatSession.objects.filter(pk=drifted.pk).update(sync_state=SyncState.DRIFTED)
    out = run("motorhead_rehydrate", "--drifted-only")
    assert "[1/1] drifted: 2 message(s)" in out and "Done: 1 session(s), 0 failed." in out
    assert [m["content"] for m in upstream.stored_messages("drifted")] == ["a", "b"]
    assert upstream.stored_messages("fine") == []


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("motorhead_push", ["--session", "x", "--include-failed"], "cannot be combined"),
        ("motorhead_push", ["--namespace", "ns"], "--namespace only goes with --session"),
        ("motorhead_pull", ["--session", "a\x00b"], "no NUL characters"),
        ("motorhead_verify", ["--session", "nobody"], "No session 'nobody' in namespace"),
        ("motorhead_verify", ["--session", "x", "--namespace", "a\x00"], "--namespace 'a"),
        ("motorhead_rehydrate", ["--drifted-only", "--session", "x"], "cannot be combined"),
        # Each command takes only its own options.
        ("motorhead_pull", ["--include-failed"], "unrecognized arguments"),
        ("motorhead_verify", ["--drifted-only"], "unrecognized arguments"),
        ("motorhead_push", ["--drifted-only"], "unrecognized arguments"),
        ("motorhead_rehydrate", ["--verify"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_a_command_error_before_any_request(upstream, name, options, message):
    write("x", "hi")
    with pytest.raises(CommandError, match=message):
        run(name, *options)
    assert upstream.requests == []


@pytest.mark.parametrize("name", ["motorhead_push", "motorhead_pull", "motorhead_verify"])
def test_each_needs_a_server(settings, name):
    settings.MOTORHEAD = {}
    with pytest.raises(CommandError, match="Sync is not enabled"):
        run(name)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (["--verify"], ["motorhead_verify"]),
        (["--pull", "--session", "s"], ["motorhead_pull", "--session", "s"]),
        ([], ["motorhead_push"]),
        (["--rehydrate", "--drifted-only"], ["motorhead_rehydrate", "--drifted-only"]),
    ],
)
def test_motorhead_sync_is_an_alias_that_says_so(upstream, old, new):
    session = write("s", "hi")
    engine.push(session.pk)
    expected = run(*new)
    out, err = StringIO(), StringIO()
    call_command("motorhead_sync", *old, stdout=out, stderr=err)
    assert out.getvalue() == expected
    assert f"motorhead_sync is deprecated: run {new[0]}" in err.getvalue()
    quiet = StringIO()
    call_command("motorhead_sync", *old, "-v", "0", stdout=StringIO(), stderr=quiet)
    assert quiet.getvalue() == ""


def test_motorhead_sync_verify_keeps_its_exit_status_and_names_the_drift(upstream):
    engine.push(write("gone", "x").pk)
    upstream.wipe()
    with pytest.raises(CommandError, match=r"1 session\(s\) drifted: gone\.") as caught:
        call_command("motorhead_sync", "--verify", stdout=StringIO(), stderr=StringIO())
    assert caught.value.returncode == 1


def test_the_alias_help_says_it_is_deprecated():
    from motorhead_django.management.commands.motorhead_sync import Command

    assert Command.help.startswith("Deprecated alias: use motorhead_push")


@pytest.mark.slow  # two manage.py processes
def test_from_the_command_line_the_alias_exits_with_the_commands_status():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    # The example project's manage.py, on its own defaults (what a deployment's cron runs).
    kept = {
        k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL")
    }
    env = kept | {"DEBUG": "true"}

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "manage.py", *args]
        return subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True, timeout=120
        )

    new, old = (
        manage("motorhead_push", "--namespace", "ns"),
        manage("motorhead_sync", "--namespace", "ns"),
    )
    assert new.returncode == old.returncode == 1
    assert "CommandError: --namespace only goes with --session." in new.stderr
    assert "CommandError: --namespace only goes with --session." in old.stderr
    assert "motorhead_sync is deprecated: run motorhead_push." in old.stderr
