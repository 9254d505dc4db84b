"""Governance: legal holds, retention, export and import, verified erasure, the read audit."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from rest_framework.test import APIClient

from motorhead_django import engine, export, governance, memory, redact, signals
from motorhead_django.exceptions import MotorheadLegalHoldError
from motorhead_django.models import (
    ApiKey,
    ChatMessage,
    ChatSession,
    ErasureReceipt,
    LegalHold,
    MessageEmbedding,
    ReadAudit,
    SummaryVersion,
)

from .test_tasks import rig_factory, worker_test  # noqa: F401  (the real-worker rig)

pytestmark = pytest.mark.django_db


def make_user(name: str, *perms: str, superuser: bool = False):
    users = get_user_model()
    if superuser:
        return users.objects.create_superuser(name, f"{name}@example.com", "pw")
    user = users.objects.create_user(name, is_staff=True)
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm))
    return users.objects.get(pk=user.pk)  # a fresh permission cache


def make_session(session_id: str = "chat", *, owner=None, pairs=(("Human", "hi"),), **kwargs):
    session = memory.create_session(session_id, owner=owner, **kwargs)
    if pairs:
        memory.append_messages(session, list(pairs))
    session.refresh_from_db()
    return session


def age(session: ChatSession, days: int) -> None:
    ChatSession.objects.filter(pk=session.pk).update(
        updated_at=timezone.now() - timedelta(days=days)
    )


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# -- legal hold ------------------------------------------------------------------------


def test_a_held_session_refuses_the_core_delete_its_own_hold_or_its_owners():
    ann = make_user("ann")
    own = make_session("own")
    ChatSession.objects.filter(pk=own.pk).update(legal_hold=True)
    with pytest.raises(MotorheadLegalHoldError):
        memory.delete_session(own)
    owned = make_session("owned", owner=ann)
    governance.hold_owner(ann)
    with pytest.raises(MotorheadLegalHoldError):
        memory.delete_session(owned, remote=False)
    assert ChatSession.objects.count() == 2 and ChatMessage.objects.count() == 2
    assert governance.release_owner(ann)
    memory.delete_session(owned, remote=False)
    assert not ChatSession.objects.filter(pk=owned.pk).exists()


def test_rest_and_compat_deletes_of_a_held_session_are_a_409():
    ann = make_user("ann")
    session = make_session(owner=ann)
    governance.set_hold(session, True)
    response = api(ann).delete(f"/api/sessions/{session.pk}/")
    assert response.status_code == 409, response.content
    assert response.json()["detail"].startswith("This session is under a legal hold")
    _key, raw = ApiKey.issue(ann, "k")
    response = APIClient().delete("/motorhead/sessions/chat/memory", HTTP_X_METAL_API_KEY=raw)
    assert response.status_code == 409
    assert ChatSession.objects.filter(pk=session.pk).exists()


def test_the_hold_is_shown_in_rest_and_set_only_with_its_permission():
    ann = make_user("ann")
    lawyer = make_user("lawyer", "set_legal_hold")
    session = make_session(owner=ann)
    assert api(ann).get(f"/api/sessions/{session.pk}/").json()["legal_hold"] is False
    response = api(ann).patch(f"/api/sessions/{session.pk}/", {"legal_hold": True}, format="json")
    assert response.status_code == 403
    assert "set_legal_hold" in response.json()["legal_hold"][0]
    bad = api(ann).patch(f"/api/sessions/{session.pk}/", {"legal_hold": "x"}, format="json")
    assert bad.status_code == 400 and "legal_hold" in bad.json()
    # The lawyer owns nothing: holding another user's session takes change access too.
    lawyer.user_permissions.add(Permission.objects.get(codename="change_chatsession"))
    lawyer = get_user_model().objects.get(pk=lawyer.pk)
    response = api(lawyer).patch(
        f"/api/sessions/{session.pk}/", {"legal_hold": True}, format="json"
    )
    assert response.status_code == 200 and response.json()["legal_hold"] is True
    session.refresh_from_db()
    assert session.legal_hold
    created = api(ann).post(
        "/api/sessions/", {"session_id": "x", "legal_hold": True}, format="json"
    )
    assert created.status_code == 400 and "read-only" in created.json()["legal_hold"][0]


def test_admin_cannot_delete_a_held_session_from_its_page(client):
    client.force_login(make_user("root", superuser=True))
    held = make_session("held")
    governance.set_hold(held, True)
    page = client.get(f"/admin/motorhead_django/chatsession/{held.pk}/delete/", follow=True)
    assert "under a legal hold and cannot be deleted" in page.content.decode()
    client.post(f"/admin/motorhead_django/chatsession/{held.pk}/delete/", {"post": "yes"})
    assert ChatSession.objects.filter(pk=held.pk).exists()


ADMIN_DELETES = ["delete_selected", "delete_everywhere", "delete_on_server", "erase_everywhere"]


@pytest.mark.parametrize("hold", ["session", "owner"])
@pytest.mark.parametrize("action", ADMIN_DELETES)
def test_no_admin_delete_touches_a_selection_holding_a_held_session(client, upstream, action, hold):
    """Not the free ones either: the user is told which sessions are held, nothing goes."""
    client.force_login(make_user("root", superuser=True))
    ann = make_user("ann")
    held = make_session("held-one", owner=ann)
    free = make_session("free-one")
    for session in (held, free):
        engine.push(session.pk)
    if hold == "session":
        governance.set_hold(held, True)
    else:
        governance.hold_owner(ann, reason="litigation")
    data = {"action": action, "_selected_action": [held.pk, free.pk]}
    for body in (data, {**data, "post": "yes"}):  # the first step and a forged confirmation
        page = client.post("/admin/motorhead_django/chatsession/", body, follow=True)
        text = page.content.decode()
        assert "Nothing was deleted: 1 selected session is under a legal hold: “held-one”." in text
        assert 'name="post" value="yes"' not in text  # no confirmation page either
    assert set(ChatSession.objects.values_list("session_id", flat=True)) == {"held-one", "free-one"}
    assert not ChatSession.objects.filter(delete_requested_at__isnull=False).exists()
    assert upstream.stored_messages(free.remote_id) == [{"role": "Human", "content": "hi"}]
    assert not ErasureReceipt.objects.exists()


def test_the_erase_action_needs_its_own_permission(client, upstream):
    session = make_session("chat")
    deleter = make_user("deleter", "view_chatsession", "change_chatsession", "delete_chatsession")
    client.force_login(deleter)
    page = client.get("/admin/motorhead_django/chatsession/")
    assert b"erase_everywhere" not in page.content
    data = {"action": "erase_everywhere", "_selected_action": [session.pk], "post": "yes"}
    client.post("/admin/motorhead_django/chatsession/", data)
    assert (
        ChatSession.objects.filter(pk=session.pk).exists() and not ErasureReceipt.objects.exists()
    )
    client.force_login(make_user("eraser", "view_chatsession", "erase_sessions"))
    assert b"erase_everywhere" in client.get("/admin/motorhead_django/chatsession/").content


def test_erase_everywhere_confirms_then_shows_the_receipt(client, upstream):
    eraser = make_user("eraser", "view_chatsession", "erase_sessions")
    client.force_login(eraser)
    session = make_session("doomed", pairs=[("Human", "secret-words"), ("AI", "ok")])
    engine.push(session.pk)
    remote_id = session.remote_id
    data = {"action": "erase_everywhere", "_selected_action": [session.pk]}
    page = client.post("/admin/motorhead_django/chatsession/", data)
    assert page.status_code == 200 and 'name="post" value="yes"' in page.content.decode()
    assert "read back to confirm" in page.content.decode()
    assert ChatSession.objects.filter(pk=session.pk).exists()

    response = client.post("/admin/motorhead_django/chatsession/", {**data, "post": "yes"})
    receipt = ErasureReceipt.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/motorhead_django/erasurereceipt/{receipt.pk}/change/"
    assert not ChatSession.objects.exists() and upstream.stored_messages(remote_id) == []
    assert receipt.server_confirmed is True and receipt.erased_by == eraser
    assert receipt.counts["messages"] == 2 and receipt.subject == f"session:{session.pk}"
    shown = client.get(response["Location"], follow=True).content.decode()
    assert "Erased 1 session; the server confirmed 1." in shown
    assert receipt.ids_sha256 in shown and "secret-words" not in shown


def test_erasing_several_sessions_lists_their_receipts(client, upstream):
    client.force_login(make_user("root", superuser=True))
    sessions = [make_session(f"s{n}") for n in range(3)]
    data = {"action": "erase_everywhere", "_selected_action": [s.pk for s in sessions]}
    response = client.post("/admin/motorhead_django/chatsession/", {**data, "post": "yes"})
    receipts = list(ErasureReceipt.objects.order_by("pk"))
    assert len(receipts) == 3 and not ChatSession.objects.exists()
    assert response["Location"].endswith("?id__in=" + ",".join(str(r.pk) for r in receipts))
    listed = client.get(response["Location"]).content.decode()
    assert "3 erasure receipts" in listed or "3 results" in listed


def test_admin_shows_the_hold_read_only_without_the_permission(client):
    viewer = make_user("viewer", "view_chatsession", "change_chatsession")
    client.force_login(viewer)
    session = make_session()
    page = client.get(f"/admin/motorhead_django/chatsession/{session.pk}/change/").content.decode()
    assert "Legal hold" in page and 'name="legal_hold"' not in page
    lawyer = make_user("lawyer", "view_chatsession", "change_chatsession", "set_legal_hold")
    client.force_login(lawyer)
    page = client.get(f"/admin/motorhead_django/chatsession/{session.pk}/change/").content.decode()
    assert 'name="legal_hold"' in page


# -- retention ------------------------------------------------------------------------


def test_no_policy_is_a_no_op(django_assert_max_num_queries):
    old = make_session()
    age(old, 1000)
    with django_assert_max_num_queries(3):
        result = governance.apply_retention()
    assert result.deleted == 0 and result.receipt is None
    assert ChatSession.objects.filter(pk=old.pk).exists()


def test_retention_by_days_per_namespace_with_dry_run_signal_receipt_and_hold(upstream, settings):
    settings.MOTORHEAD = settings.MOTORHEAD | {"RETENTION": {"short": {"days": 30}}}
    old = make_session("old", namespace="short")
    recent = make_session("recent", namespace="short")
    other = make_session("other", namespace="long")
    held = make_session("held", namespace="short")
    for session in (old, recent, other, held):
        engine.push(session.pk)
    for session in (old, other, held):
        age(session, 31)
    governance.set_hold(held, True)
    out = io.StringIO()
    call_command("motorhead_retention", "--dry-run", stdout=out)
    assert f"would delete session {old.pk} (short/old)" in out.getvalue()
    assert "1 session(s) to delete, 0 to trim, 1 held" in out.getvalue()
    assert ChatSession.objects.count() == 4
    seen = []

    def receiver(sender, session, what, count, **kwargs):
        seen.append((session.pk, what, count, ChatSession.objects.filter(pk=session.pk).exists()))

    signals.pre_retention_delete.connect(receiver)
    try:
        out = io.StringIO()
        call_command("motorhead_retention", stdout=out)
    finally:
        signals.pre_retention_delete.disconnect(receiver)
    assert seen == [(old.pk, "session", 1, True)]  # sent before the row went
    assert "Deleted 1 session(s)" in out.getvalue() and "1 held" in out.getvalue()
    assert set(ChatSession.objects.values_list("session_id", flat=True)) == {
        "recent",
        "other",
        "held",
    }
    assert upstream.stored_messages("old") == []
    assert upstream.stored_messages("held") == [{"role": "Human", "content": "hi"}]
    receipt = ErasureReceipt.objects.get()
    assert receipt.kind == "retention" and receipt.counts["sessions"] == 1
    assert receipt.server_confirmed is True


def test_days_override_session_override_and_messages_policy(settings):
    settings.MOTORHEAD = {"RETENTION": {"*": {"messages": 2}}}
    long_chat = make_session("long", pairs=[("Human", f"m{i}") for i in range(5)])
    own = make_session("own", pairs=[("Human", "x")])
    ChatSession.objects.filter(pk=own.pk).update(retention_days=1)
    age(own, 2)
    result = governance.apply_retention()
    assert result.trimmed_messages == 3 and result.deleted == 1
    assert list(long_chat.messages.values_list("content", flat=True)) == ["m3", "m4"]
    assert not ChatSession.objects.filter(pk=own.pk).exists()
    age(long_chat, 10)
    call_command("motorhead_retention", "--days", "5", stdout=io.StringIO())
    assert not ChatSession.objects.exists()
    with pytest.raises(CommandError, match="--days"):
        call_command("motorhead_retention", "--days", "-1")


def test_retention_runs_in_bounded_batches(settings):
    settings.MOTORHEAD = {"RETENTION": {"": {"days": 1}}, "RETENTION_BATCH": 2}
    for number in range(5):
        age(make_session(f"s{number}", pairs=()), 3)
    assert governance.apply_retention().plan.more
    assert ChatSession.objects.count() == 3
    governance.apply_retention()
    assert not governance.apply_retention().plan.more
    assert not ChatSession.objects.exists()


def test_the_beat_entry_is_a_no_op_without_a_policy():
    from motorhead_django import tasks
    from motorhead_django.schedule import BEAT_SCHEDULE

    assert BEAT_SCHEDULE["motorhead-django-retention"]["task"] == "motorhead_django.retention"
    old = make_session()
    age(old, 1000)
    assert tasks.retention() == {"deleted": 0, "trimmed": 0, "held": 0, "more": False}
    assert ChatSession.objects.exists()


# -- export and import ----------------------------------------------------------------


def _records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_export_jsonl_and_markdown_of_a_user_round_trip_through_import(tmp_path):
    ann = make_user("ann")
    bob = make_user("bob")
    first = make_session("one", owner=ann, pairs=[("Human", "hello"), ("AI", "line\nbreak")])
    SummaryVersion.objects.create(session=first, context="a summary", through_sequence=2)
    make_session("two", owner=ann, namespace="ns", metadata={"k": [1, 2]})
    make_session("bob's", owner=bob)
    path = tmp_path / "ann.jsonl"
    call_command("motorhead_export", "--user", "ann", "--output", str(path))
    records = _records(path.read_text())
    assert records[0]["type"] == "export" and records[0]["subject"] == f"user:{ann.pk}"
    kinds = [r["type"] for r in records[1:]]
    assert kinds == ["session", "message", "message", "summary", "session", "message"]
    assert all(r.get("owner") in (None, "ann") for r in records)
    markdown = io.StringIO()
    call_command("motorhead_export", "--user", "ann", "--format", "markdown", stdout=markdown)
    assert "## Session one" in markdown.getvalue() and "> line\n> break" in markdown.getvalue()

    def snapshot():
        sessions = ChatSession.objects.filter(owner=ann).order_by("session_id")
        return [
            (
                tuple(getattr(s, f) for f in (*export._SESSION_FIELDS, "owner_id")),
                list(s.messages.order_by("sequence").values_list(*export._EXPORTED_MESSAGE_FIELDS)),
                list(s.summaries.values_list(*export._SUMMARY_FIELDS)),
            )
            for s in sessions
        ]

    before = snapshot()
    ChatSession.objects.filter(owner=ann).delete()
    out = io.StringIO()
    call_command("motorhead_import", "--from-export", str(path), stdout=out)
    assert "Restored 2 session(s), 3 message(s), 1 summary version(s)." in out.getvalue()
    assert snapshot() == before
    err = io.StringIO()
    call_command("motorhead_import", "--from-export", str(path), stdout=io.StringIO(), stderr=err)
    assert err.getvalue().count("Skipped") == 2


def test_the_export_carries_agent_items_so_an_agent_conversation_round_trips(tmp_path):
    ann = make_user("ann")
    session = make_session("agent", owner=ann, pairs=[("Human", "plain")])
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a": [1]}'}
    memory.append_messages(session, [("AI", "[function_call f]")], items=[call])
    path = tmp_path / "ann.jsonl"
    call_command("motorhead_export", "--user", "ann", "--output", str(path))
    assert [r["item"] for r in _records(path.read_text()) if r["type"] == "message"] == [None, call]
    markdown = "".join(export.export(export.sessions_of(ann), "markdown"))
    assert "call_id" not in markdown  # the transcript stays readable text

    ChatSession.objects.filter(owner=ann).delete()
    call_command("motorhead_import", "--from-export", str(path), stdout=io.StringIO())
    restored = ChatSession.objects.get(owner=ann, session_id="agent")
    assert [m.item for m in memory.history(restored)] == [None, call]

    # An export made before items were exported still imports (items None); a bad item is refused.
    lines = path.read_text().splitlines()
    old = [json.loads(line) for line in lines]
    for record in old:
        record.pop("item", None)
    ChatSession.objects.filter(owner=ann).delete()
    export.import_export(json.dumps(r) for r in old)
    restored = ChatSession.objects.get(owner=ann, session_id="agent")
    assert [m.item for m in memory.history(restored)] == [None, None]
    ChatSession.objects.filter(owner=ann).delete()
    old[-1]["item"] = ["not", "an object"]
    with pytest.raises(export.ExportFormatError, match="item"):
        export.import_export(json.dumps(r) for r in old)
    assert not ChatSession.objects.filter(owner=ann).exists()  # nothing half-restored


def test_export_and_import_refuse_bad_input(tmp_path):
    with pytest.raises(CommandError, match="no such user"):
        call_command("motorhead_export", "--user", "nobody")
    with pytest.raises(CommandError, match="a number"):
        call_command("motorhead_export", "--session", "x")
    with pytest.raises(CommandError):
        call_command("motorhead_export", "--session", "1", "--user", "a")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "session"}\n')
    with pytest.raises(CommandError, match="not a motorhead-django export"):
        call_command("motorhead_import", "--from-export", str(bad))
    bad.write_text('{"type": "export", "version": 1}\n{"type": "session"}\n')
    with pytest.raises(CommandError, match="Line 2"):
        call_command("motorhead_import", "--from-export", str(bad))
    with pytest.raises(CommandError, match="--from-export"):
        call_command("motorhead_import", "--from-export", str(tmp_path / "missing"))


def test_rest_export_is_own_data_unless_permitted():
    ann, bob = make_user("ann"), make_user("bob")
    make_session("mine", owner=ann)
    theirs = make_session("theirs", owner=bob)
    response = api(ann).get("/api/export/")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/jsonl")
    body = b"".join(response.streaming_content).decode()
    assert '"session_id": "mine"' in body and "theirs" not in body
    assert api(ann).get("/api/export/?user=bob").status_code == 403
    assert api(ann).get(f"/api/sessions/{theirs.pk}/export/").status_code == 404
    assert api(ann).get("/api/export/?format=pdf").status_code == 400
    auditor = make_user("auditor", "view_chatsession")
    response = api(auditor).get("/api/export/?user=bob&format=markdown")
    assert response.status_code == 200
    assert "## Session theirs" in b"".join(response.streaming_content).decode()
    assert ReadAudit.objects.filter(reader=auditor, session_pk=theirs.pk).exists()
    assert api(auditor).get("/api/export/?user=nobody").status_code == 404


def test_admin_export_action_streams_the_selection(client):
    client.force_login(make_user("root", superuser=True))
    session = make_session("picked")
    make_session("not picked")
    response = client.post(
        "/admin/motorhead_django/chatsession/",
        {"action": "export_jsonl", "_selected_action": [session.pk]},
    )
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    assert '"session_id": "picked"' in body and "not picked" not in body


# -- verified erasure -----------------------------------------------------------------


def test_erasing_a_user_everywhere_prints_a_receipt_confirmed_by_the_server(upstream):
    ann = make_user("ann")
    make_user("bob")
    one = make_session("one", owner=ann, pairs=[("Human", "private-1"), ("AI", "private-2")])
    two = make_session("two", owner=ann, namespace="ns")
    SummaryVersion.objects.create(session=one, context="s")
    keep = make_session("bob's", owner=get_user_model().objects.get(username="bob"))
    for session in (one, two, keep):
        engine.push(session.pk)
    ApiKey.issue(ann, "k")
    out = io.StringIO()
    call_command("motorhead_erase", "--user", "ann", stdout=out)
    receipt = json.loads(out.getvalue())
    assert receipt["counts"] == {
        "sessions": 2,
        "messages": 3,
        "summaries": 1,
        "embeddings": 0,
        "checkpoints": 0,
        "api_keys": 1,
    }
    assert receipt["server_confirmed"] is True and receipt["subject"] == f"user:{ann.pk}"
    expected = hashlib.sha256(f"/{one.remote_id}\nns/{two.remote_id}".encode()).hexdigest()
    assert receipt["ids_sha256"] == expected
    assert "private" not in out.getvalue()  # no content anywhere
    assert not ChatSession.objects.filter(owner=ann).exists() and not ApiKey.objects.exists()
    assert upstream.stored_messages(one.remote_id) == []
    assert upstream.stored_messages(keep.remote_id) != []
    stored = ErasureReceipt.objects.get()
    assert stored.as_dict() == receipt
    # The receipt stays exportable after the data is gone.
    text = "".join(export.export(ChatSession.objects.none(), subject=f"user:{ann.pk}"))
    assert '"type": "receipt"' in text


def test_erasure_refuses_held_data_and_reports_an_unconfirmed_server(upstream):
    ann = make_user("ann")
    session = make_session("s", owner=ann)
    governance.hold_owner(ann)
    with pytest.raises(CommandError, match="legal hold"):
        call_command("motorhead_erase", "--user", "ann")
    with pytest.raises(CommandError, match="legal hold"):
        call_command("motorhead_erase", "--session", str(session.pk))
    LegalHold.objects.all().delete()
    engine.push(session.pk)
    upstream.stop()
    out, err = io.StringIO(), io.StringIO()
    call_command("motorhead_erase", "--session", str(session.pk), stdout=out, stderr=err)
    assert json.loads(out.getvalue())["server_confirmed"] is False
    assert "Not confirmed by the server" in err.getvalue()
    # A tombstone: the sweep finishes the delete once the server is back.
    assert ChatSession.objects.filter(pk=session.pk, delete_requested_at__isnull=False).exists()


def test_local_only_erasure_says_no_server_was_checked():
    session = make_session()
    erasure = governance.erase_session(session)
    assert erasure.receipt.server_confirmed is None
    assert "not enabled" in erasure.receipt.server_detail
    assert not ChatSession.objects.exists()


def test_receipts_are_read_only_in_the_admin(client):
    client.force_login(make_user("root", superuser=True))
    receipt = governance.erase_session(make_session()).receipt
    assert client.get("/admin/motorhead_django/erasurereceipt/").status_code == 200
    page = client.get(f"/admin/motorhead_django/erasurereceipt/{receipt.pk}/change/")
    assert page.status_code == 200 and 'type="submit"' not in page.content.decode().split(
        "<form", 2
    )[-1].replace('type="submit" value="Search"', "")
    assert (
        client.get(f"/admin/motorhead_django/erasurereceipt/{receipt.pk}/delete/").status_code
        == 403
    )


# -- audit of reads -------------------------------------------------------------------


def test_reads_by_non_owners_and_in_the_admin_are_audited(client, settings):
    ann = make_user("ann")
    support = make_user("support", "view_chatsession")
    session = make_session(owner=ann)
    assert api(ann).get(f"/api/sessions/{session.pk}/messages/").status_code == 200
    assert not ReadAudit.objects.exists()  # the owner's own reads are not
    assert api(support).get(f"/api/sessions/{session.pk}/messages/").status_code == 200
    entry = ReadAudit.objects.get()
    assert (entry.reader, entry.session_pk, entry.owner_pk, entry.surface) == (
        support,
        session.pk,
        ann.pk,
        "rest",
    )
    client.force_login(support)
    assert (
        client.get(f"/admin/motorhead_django/chatsession/{session.pk}/change/").status_code == 200
    )
    assert ReadAudit.objects.filter(surface="admin", reader=support).count() == 1
    # Only superusers see the audit.
    assert client.get("/admin/motorhead_django/readaudit/").status_code == 403
    client.force_login(make_user("root", superuser=True))
    page = client.get("/admin/motorhead_django/readaudit/")
    assert page.status_code == 200 and "support" in page.content.decode()
    # Its own retention.
    ReadAudit.objects.filter(surface="rest").update(read_at=timezone.now() - timedelta(days=40))
    settings.MOTORHEAD = {"READ_AUDIT_DAYS": 30}
    assert governance.purge_read_audit() == 1
    assert list(ReadAudit.objects.values_list("surface", flat=True)) == ["admin"]
    settings.MOTORHEAD = {"READ_AUDIT": False}
    api(support).get(f"/api/sessions/{session.pk}/")
    assert ReadAudit.objects.count() == 1


# -- redaction ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail ann.lee+x@example.co.uk now", "mail [email] now"),
        ("card 4111 1111 1111 1111.", "card [card]."),
        ("card 4111-1111-1111-1111", "card [card]"),
        ("not a card 4111 1111 1111 1112", "not a card 4111 1111 1111 1112"),
        ("call +44 20 7946 0958 or (555) 123-4567", "call [phone] or [phone]"),
        ("on 2024-01-15 at 10:30, order 1234", "on 2024-01-15 at 10:30, order 1234"),
        ("", ""),
    ],
)
def test_the_default_redactor(text, expected):
    assert redact.default("Human", text) == expected


def test_luhn():
    assert redact.luhn("79927398713") and not redact.luhn("79927398710")


def test_redaction_applies_to_the_push_and_keeps_the_original_locally(upstream, settings):
    settings.MOTORHEAD = settings.MOTORHEAD | {"REDACT": "motorhead_django.redact.default"}
    session = make_session("pii", pairs=[("Human", "I am ann@example.com, 4111111111111111")])
    engine.push(session.pk)
    assert upstream.stored_messages("pii") == [{"role": "Human", "content": "I am [email], [card]"}]
    assert session.messages.get().content == "I am ann@example.com, 4111111111111111"
    # The pull and verify compare what was sent: no drift, nothing foreign.
    engine.pull(session.pk)
    assert session.messages.count() == 1
    verified = engine.verify(session.pk)
    assert verified.done and verified.drift == ""


def test_redact_local_stores_the_redacted_text(settings):
    settings.MOTORHEAD = {"REDACT": "motorhead_django.redact.default", "REDACT_LOCAL": True}
    session = make_session(pairs=[("Human", "write to bob@example.org")])
    assert session.messages.get().content == "write to [email]"
    # The agent item is redacted the same way: no original text is kept in it either.
    item = {"role": "user", "content": [{"type": "input_text", "text": "bob@example.org, ok"}]}
    (row,) = memory.append_messages(session, [("Human", "bob@example.org, ok")], items=[item])
    row.refresh_from_db()
    assert row.content == "[email], ok"
    assert row.item == {"role": "user", "content": [{"type": "input_text", "text": "[email], ok"}]}


def test_the_local_summariser_sees_redacted_text(settings, monkeypatch):
    seen = []

    def summarizer(previous, messages):
        seen.extend(m.content for m in messages)
        return "summary"

    settings.MOTORHEAD = {"REDACT": "motorhead_django.redact.default", "SUMMARIZER": "x.y"}
    session = make_session(pairs=[("Human", "ann@example.com")])
    monkeypatch.setattr("motorhead_django.memory.import_string", lambda path: summarizer)
    memory.summarize(session.pk, 1, 1)
    assert seen == ["[email]"]
    assert session.messages.get().content == "ann@example.com"


# -- checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("motorhead", "code"),
    [
        ({"RETENTION": []}, "E015"),
        ({"RETENTION": {"ns": {"days": -1}}}, "E015"),
        ({"RETENTION": {"ns": {"weeks": 2}}}, "E015"),
        ({"RETENTION": {"ns": {"messages": 0}}}, "E015"),
        ({"RETENTION": {"ns": {}}}, "E015"),
        ({"RETENTION_BATCH": 0}, "E015"),
        ({"READ_AUDIT_DAYS": "30"}, "E015"),
        ({"REDACT": "no.such.function"}, "E016"),
        ({"REDACT": "motorhead_django.redact.EMAIL"}, "E016"),
        ({"REDACT_LOCAL": "yes"}, "E016"),
        ({"READ_AUDIT": 1}, "E016"),
    ],
)
def test_bad_governance_settings_are_system_check_errors(settings, motorhead, code):
    from django.core import checks

    settings.MOTORHEAD = motorhead
    ids = {m.id for m in checks.run_checks()}
    assert f"motorhead_django.{code}" in ids


def test_good_governance_settings_pass_the_checks(settings):
    from django.core import checks

    settings.MOTORHEAD = {
        "RETENTION": {"support": {"days": 30}, "*": {"messages": 500, "days": 0}},
        "RETENTION_BATCH": 10,
        "READ_AUDIT_DAYS": 90,
        "REDACT": "motorhead_django.redact.default",
        "REDACT_LOCAL": True,
        "READ_AUDIT": False,
    }
    assert not [m for m in checks.run_checks() if m.id.startswith("motorhead_django.E")]


def test_erasure_on_a_long_term_memory_server_is_not_confirmed(upstream_factory):
    upstream = upstream_factory(long_term_memory=True, motorhead={"LONG_TERM_MEMORY": True})
    session = make_session("ltm", pairs=[("Human", "remember my address")])
    engine.push(session.pk)
    receipt = governance.erase_session(session).receipt
    # The window and summary are gone; the server's long-term hashes are not.
    assert upstream.stored_messages("ltm") == []
    assert receipt.server_confirmed is False
    assert "Long-term memory still holds entries of 1 session(s)" in receipt.server_detail


# -- with a real worker on PostgreSQL ---------------------------------------------------


@worker_test
def test_retention_through_a_real_worker_spares_every_held_session(rig_factory, redis_url):  # noqa: F811
    rig = rig_factory(redis_url)
    rig.motorhead["RETENTION"] = {"": {"days": 30}}
    rig.start_worker()
    ann = make_user("ann")
    sessions = {
        name: make_session(name, owner=ann if name == "owner-held" else None)
        for name in ("old-1", "old-2", "held", "owner-held", "recent")
    }
    rig.drain()
    for name in ("old-1", "old-2", "held", "owner-held"):
        age(sessions[name], 40)
    governance.set_hold(sessions["held"], True)
    governance.hold_owner(ann)
    # Every delete path refuses the held ones.
    for name in ("held", "owner-held"):
        with pytest.raises(MotorheadLegalHoldError):
            memory.delete_session(sessions[name])
        assert (
            api(make_user(f"root-{name}", superuser=True))
            .delete(f"/api/sessions/{sessions[name].pk}/")
            .status_code
            == 409
        )
    from motorhead_django import tasks

    tasks.retention.apply_async(queue=rig.queue, retry=False)
    rig.wait_until(lambda: ErasureReceipt.objects.exists(), timeout=60)
    assert set(ChatSession.objects.values_list("session_id", flat=True)) == {
        "held",
        "owner-held",
        "recent",
    }
    for name in ("old-1", "old-2"):
        assert rig.server.stored_messages(sessions[name].remote_id) == []
    for name in ("held", "owner-held", "recent"):
        assert rig.server.stored_messages(sessions[name].remote_id) != []
    receipt = ErasureReceipt.objects.get()
    assert receipt.kind == "retention" and receipt.counts["sessions"] == 2
    assert receipt.server_confirmed is True, receipt.server_detail


def test_owner_holds_in_the_admin_need_the_hold_permission(client):
    ann = make_user("ann")
    clerk = make_user("clerk", "view_chatsession", "change_chatsession", "delete_chatsession")
    client.force_login(clerk)
    assert client.get("/admin/motorhead_django/legalhold/add/").status_code == 403
    lawyer = make_user("lawyer", "set_legal_hold")
    client.force_login(lawyer)
    response = client.post(
        "/admin/motorhead_django/legalhold/add/", {"owner": ann.pk, "reason": "case 12"}
    )
    assert response.status_code == 302, response.content
    hold = LegalHold.objects.get()
    assert (hold.owner, hold.set_by, hold.reason) == (ann, lawyer, "case 12")
    session = make_session(owner=ann)
    with pytest.raises(MotorheadLegalHoldError):
        memory.delete_session(session)
    client.post(f"/admin/motorhead_django/legalhold/{hold.pk}/delete/", {"post": "yes"})
    assert not LegalHold.objects.exists()
    memory.delete_session(session, remote=False)


def test_a_retention_run_reads_only_sessions_that_may_be_due(settings, django_assert_num_queries):
    settings.MOTORHEAD = {"RETENTION": {"*": {"days": 30, "messages": 3}}}
    for number in range(30):
        make_session(f"fresh-{number}")  # one message each: neither rule applies
    trimmed = make_session("long", pairs=[("Human", f"m{i}") for i in range(5)])
    assert governance.apply_retention().trimmed_messages == 2
    # Trimmed once, it is not read again: the count and one (empty) walk.
    with django_assert_num_queries(2):
        plan = governance.plan_retention()
    assert plan.sessions == [] and plan.trims == [] and not plan.more
    assert trimmed.messages.count() == 3


def test_what_the_built_in_summariser_and_embeddings_send_is_redacted(settings):
    """Both call summaries.outgoing_text for every message they send to a model."""
    from motorhead_django import summaries

    assert summaries.outgoing_text("Human", "mail ann@example.com") == "mail ann@example.com"
    settings.MOTORHEAD = {"REDACT": "motorhead_django.redact.default"}
    sent = summaries.outgoing_text("Human", "mail ann@example.com")
    assert "ann@example.com" not in sent and sent.startswith("mail ")


def test_erasure_deletes_and_counts_the_embeddings_even_of_a_tombstone(upstream, settings):
    """Issue 19: embeddings are erased and counted; they go at once, not with the tombstone."""
    from motorhead_django import embeddings

    ann = make_user("ann")
    one = make_session("one", owner=ann, pairs=[("Human", "a"), ("AI", "b"), ("Human", "c")])
    two = make_session("two", owner=ann, pairs=[("Human", "d")])
    kept = make_session("kept", pairs=[("Human", "e")])
    settings.MOTORHEAD = {
        **settings.MOTORHEAD,
        "EMBEDDINGS": {"BASE_URL": upstream.openai_url, "MODEL": "e"},
    }
    for session in (one, two, kept):
        embeddings.embed_pending(session.pk)  # (the on-commit task needs a committed write)
    assert MessageEmbedding.objects.count() == 5
    for session in (one, two, kept):
        engine.push(session.pk)
    erasure = governance.erase_user(ann)
    assert erasure.receipt.counts["embeddings"] == 4
    assert set(MessageEmbedding.objects.values_list("session_id", flat=True)) == {kept.pk}
    # The server away: the session stays a tombstone, its embeddings do not.
    upstream.stop()
    erasure = governance.erase_session(kept)
    assert erasure.receipt.server_confirmed is False
    assert ChatSession.objects.filter(pk=kept.pk).exists()
    assert erasure.receipt.counts["embeddings"] == 1
    assert not MessageEmbedding.objects.exists()
    assert embeddings.embed_pending(kept.pk) == 0  # a late task makes none again
    assert not MessageEmbedding.objects.exists()
