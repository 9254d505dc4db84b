"""Findings of a hostile review: legal holds over LangGraph checkpoints, crafted ids and
parameters in the admin, another user's job, and an export that is not one."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command

pytest.importorskip("langgraph", reason="the [langgraph] extra is not installed")

from langchain_core.messages import HumanMessage  # noqa: E402

from motorhead_django.exceptions import MotorheadLegalHoldError  # noqa: E402
from motorhead_django.job_models import AdminJob  # noqa: E402
from motorhead_django.langgraph import DjangoSaver  # noqa: E402
from motorhead_django.models import ChatSession, LangGraphCheckpoint, LegalHold  # noqa: E402

from .test_langgraph import chat_graph  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)


def a_thread(saver: DjangoSaver, thread_id: str) -> None:
    chat_graph(saver).invoke(
        {"messages": [HumanMessage("hello")]},
        {"configurable": {"thread_id": thread_id}},
    )


def rows(thread_id: str) -> int:
    return LangGraphCheckpoint.objects.filter(thread_id=thread_id).count()


@pytest.mark.parametrize("operation", ["delete_thread", "prune_delete", "prune_keep", "runs"])
def test_a_held_threads_checkpoints_are_neither_deleted_nor_pruned(django_user_model, operation):
    alice = django_user_model.objects.create_user("alice")
    saver = DjangoSaver(owner=alice)
    a_thread(saver, "held")
    a_thread(saver, "held")  # two turns: a prune keeping the latest would delete some
    ChatSession.objects.filter(session_id="held", owner=alice).update(legal_hold=True)
    before = rows("held")
    runs = list(set(LangGraphCheckpoint.objects.values_list("run_id", flat=True)))
    calls = {
        "delete_thread": lambda: saver.delete_thread("held"),
        "prune_delete": lambda: saver.prune(["held"], strategy="delete"),
        "prune_keep": lambda: saver.prune(["held"]),
        "runs": lambda: saver.delete_for_runs(runs),
    }
    assert runs  # the run ids the invocations gave
    with pytest.raises(MotorheadLegalHoldError):
        calls[operation]()
    assert rows("held") == before > 0


def test_an_owner_hold_keeps_threads_that_have_no_session(django_user_model):
    alice = django_user_model.objects.create_user("alice")
    saver = DjangoSaver(owner=alice)
    a_thread(saver, "orphan")
    ChatSession.objects.filter(session_id="orphan").delete()  # the mirror went, the thread stays
    LegalHold.objects.create(owner=alice, reason="litigation")
    with pytest.raises(MotorheadLegalHoldError):
        saver.delete_thread("orphan")
    assert rows("orphan") > 0


def test_the_checkpoint_admin_refuses_to_delete_a_held_threads_rows(admin_client, admin_user):
    saver = DjangoSaver(owner=admin_user)
    a_thread(saver, "held")
    ChatSession.objects.filter(session_id="held").update(legal_hold=True)
    row = LangGraphCheckpoint.objects.filter(thread_id="held").first()
    url = f"/admin/motorhead_django/langgraphcheckpoint/{row.pk}/delete/"
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    admin_client.post(
        "/admin/motorhead_django/langgraphcheckpoint/",
        {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"},
    )
    assert LangGraphCheckpoint.objects.filter(pk=row.pk).exists()


@pytest.mark.parametrize(
    "url",
    [
        "/admin/motorhead_django/adminjob/%C2%B2/change/",
        "/admin/motorhead_django/chatsession/%C2%B2/delete/",
        "/admin/motorhead_django/langgraphcheckpoint/?owner=%C2%B2",
        "/admin/motorhead_django/adminjob/?kind=%00",
        "/admin/motorhead_django/erasurereceipt/?q=%00",
        "/admin/motorhead_django/legalhold/?reason=%00",
    ],
)
def test_crafted_ids_and_parameters_are_no_500(admin_client, url):
    assert admin_client.get(url).status_code in {200, 302, 404}


def test_a_session_page_with_a_crafted_cursor_is_no_500(admin_client):
    session = ChatSession.objects.create(session_id="s")
    url = f"/admin/motorhead_django/chatsession/{session.pk}/change/?before=%C2%B2"
    assert admin_client.get(url).status_code == 200


def test_erase_with_a_non_ascii_digit_is_a_command_error():
    with pytest.raises(CommandError):
        call_command("motorhead_erase", "--session", "²")


def test_the_delete_permission_does_not_reach_another_users_job(client, django_user_model):
    owner = django_user_model.objects.create_user("owner", is_staff=True)
    job = AdminJob.objects.create(kind="push", description="push 60 sessions", user=owner)
    other = django_user_model.objects.create_user("other", password="pw", is_staff=True)
    other.user_permissions.add(
        Permission.objects.get(
            codename="delete_adminjob", content_type__app_label="motorhead_django"
        )
    )
    client.force_login(other)
    assert client.post(
        f"/admin/motorhead_django/adminjob/{job.pk}/delete/", {"post": "yes"}
    ).status_code in {
        403,
        302,
    }
    assert AdminJob.objects.filter(pk=job.pk).exists()


def test_an_export_that_is_not_utf8_is_a_command_error(tmp_path):
    path = tmp_path / "export.jsonl"
    path.write_bytes(b'{"type": "export", "version": 1}\n\xff\xfe\n')
    with pytest.raises(CommandError, match="UTF-8"):
        call_command("motorhead_import", "--from-export", str(path))


def test_an_export_with_a_sequence_twice_is_a_command_error_and_imports_nothing(tmp_path):
    from motorhead_django import memory
    from motorhead_django.export import export_jsonl

    session = memory.get_or_create_session("twice")
    memory.append_messages(session, [("Human", "a"), ("AI", "b")])
    lines = list(export_jsonl(ChatSession.objects.filter(pk=session.pk)))
    ChatSession.objects.all().delete()
    message = next(
        line for line in lines if '"type": "message"' in line or '"type":"message"' in line
    )
    path = tmp_path / "export.jsonl"
    path.write_text(
        "".join(line if line.endswith("\n") else line + "\n" for line in [*lines, message])
    )
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("motorhead_import", "--from-export", str(path))
    assert not ChatSession.objects.exists()


def test_a_remote_delete_queued_before_a_hold_leaves_the_servers_copy(settings, motorhead_server):
    from motorhead_django import engine, memory

    settings.MOTORHEAD = {"URL": motorhead_server.url}
    session = memory.get_or_create_session("queued")
    with outbox_suspended():
        memory.append_messages(session, [("Human", "keep me")])
    assert engine.push(session.pk).pushed == 1
    ChatSession.objects.filter(pk=session.pk).update(legal_hold=True)  # set after the choice
    result = engine.delete(session.pk, scope=engine.Scope.REMOTE)
    assert result.error and result.error.startswith("held")
    session.refresh_from_db()
    assert [m["content"] for m in motorhead_server.stored_messages(session.remote_id)] == [
        "keep me"
    ]


def outbox_suspended():
    from motorhead_django import outbox

    return outbox.suspended()
