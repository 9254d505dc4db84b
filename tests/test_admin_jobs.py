"""Long admin actions as background jobs: the job row, its task, its progress page, who sees it."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from motorhead_django import engine, jobs, memory
from motorhead_django.job_models import AdminJob, JobState
from motorhead_django.models import ChatSession

from .test_tasks import rig_factory, worker_test  # noqa: F401  (the real-worker rig)

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/motorhead_django/chatsession/"


@pytest.fixture
def act(django_capture_on_commit_callbacks):
    """POST an action; the job is enqueued once the request's writes commit, as in a server."""

    def post(client, data, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(CHANGELIST, data, **kwargs)

    return post


@pytest.fixture
def small_jobs(monkeypatch):
    """Three sessions make a "large" selection, so the tests stay small."""
    monkeypatch.setattr("motorhead_django.admin.actions.JOB_THRESHOLD", 3)


def make_sessions(count: int, messages: int = 2) -> list[ChatSession]:
    sessions = []
    for n in range(count):
        session = memory.get_or_create_session(f"job-{n}")
        memory.append_messages(session, [("Human", f"m{k}") for k in range(messages)])
        sessions.append(session)
    return sessions


def staff(name: str, *codenames: str):
    user = get_user_model().objects.create_user(name, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return get_user_model().objects.get(pk=user.pk)


def job_url(job: AdminJob) -> str:
    return reverse("admin:motorhead_django_adminjob_change", args=[job.pk])


def test_a_large_push_runs_as_a_job_and_its_page_shows_the_outcome(
    admin_client, admin_user, upstream, small_jobs, act
):
    sessions = make_sessions(4, messages=3)
    data = {"action": "push_now", "_selected_action": [s.pk for s in sessions]}
    response = act(admin_client, data)
    job = AdminJob.objects.get()
    assert response.status_code == 302 and response["Location"] == job_url(job)
    # Eager Celery: the job ran inside the request.
    assert (job.state, job.kind, job.total, job.processed, job.failed) == ("done", "push", 4, 4, 0)
    assert (
        job.amount == 12 and job.user == admin_user and job.session_pks == [s.pk for s in sessions]
    )
    assert all(upstream.stored_messages(s.remote_id) for s in sessions)
    page = admin_client.get(job_url(job)).content.decode()
    assert "Started a background job for 4 sessions" in page
    assert "4 of 4 sessions (100%)" in page and "Pushed 12 message(s) of 4 sessions." in page
    assert 'http-equiv="refresh"' not in page  # finished: nothing to follow


def test_a_small_selection_still_runs_in_the_request(admin_client, upstream, small_jobs):
    sessions = make_sessions(2)
    page = admin_client.post(
        CHANGELIST,
        {"action": "push_now", "_selected_action": [s.pk for s in sessions]},
        follow=True,
    )
    assert "Pushed 4 message(s) of 2 sessions." in page.content.decode()
    assert not AdminJob.objects.exists()


def test_a_running_job_refreshes_itself_and_says_its_rate(admin_client, admin_user):
    job = AdminJob.objects.create(
        kind="verify", description="Verify", user=admin_user, total=10, state=JobState.RUNNING
    )
    AdminJob.objects.filter(pk=job.pk).update(
        processed=4, started_at=job.created_at.replace(microsecond=0)
    )
    page = admin_client.get(job_url(job)).content.decode()
    assert '<meta http-equiv="refresh" content="2">' in page
    assert "4 of 10 sessions (40%)" in page and 'max="10" value="4"' in page
    assert re.search(r"[\d.]+ sessions a second · about \d+ s left", page)
    assert 'src="http' not in page and 'src="//' not in page  # nothing from elsewhere


def test_a_job_lists_its_errors_for_change_holders_only(client, upstream, small_jobs, act):
    sessions = make_sessions(3)
    for session in sessions:
        engine.push(session.pk)
    upstream.faults.fail_next(10, mode="error", methods={"GET"})
    operator = staff("operator", "view_chatsession", "change_chatsession")
    client.force_login(operator)
    act(client, {"action": "verify_now", "_selected_action": [s.pk for s in sessions]})
    job = AdminJob.objects.get()
    assert (job.state, job.processed, job.failed) == ("done", 3, 3)
    page = client.get(job_url(job)).content.decode()
    assert "3 failed" in page and "not verified" in page and ": 500" in page
    # Another user with the view permission on jobs sees the job, not the server's text.
    client.force_login(staff("auditor", "view_adminjob"))
    page = client.get(job_url(job)).content.decode()
    assert "3 failed" in page and ": 500" not in page
    assert "details need the change permission" in page


def test_users_see_their_own_jobs_unless_they_may_view_all(client):
    alice, bob = staff("alice", "change_chatsession"), staff("bob", "change_chatsession")
    mine = AdminJob.objects.create(kind="push", description="alice's push", user=alice)
    theirs = AdminJob.objects.create(kind="pull", description="bob's pull", user=bob)
    client.force_login(alice)
    listing = client.get(reverse("admin:motorhead_django_adminjob_changelist")).content.decode()
    assert "alice&#x27;s push" in listing and "bob&#x27;s pull" not in listing
    assert client.get(job_url(mine)).status_code == 200
    assert client.get(job_url(theirs)).status_code == 403
    history = reverse("admin:motorhead_django_adminjob_history", args=[theirs.pk])
    assert client.get(history).status_code == 403
    # No job of one's own: no jobs page at all (staff grants nothing by itself).
    client.force_login(staff("carol", "change_chatsession"))
    assert client.get(reverse("admin:motorhead_django_adminjob_changelist")).status_code == 403
    client.force_login(staff("dave", "view_adminjob"))
    listing = client.get(reverse("admin:motorhead_django_adminjob_changelist")).content.decode()
    assert "alice&#x27;s push" in listing and "bob&#x27;s pull" in listing


def test_with_a_broker_an_operation_without_a_task_is_a_job(
    admin_client, upstream, monkeypatch, act
):
    (session,) = make_sessions(1)
    engine.push(session.pk)
    sent = []
    monkeypatch.setattr("motorhead_django.tasks.runs_inline", lambda: False)
    monkeypatch.setattr(jobs.run_admin_job, "apply_async", lambda args, **kw: sent.append(args))
    data = {"action": "rehydrate_now", "_selected_action": [session.pk], "post": "yes"}
    act(admin_client, data)
    job = AdminJob.objects.get()
    assert sent == [(job.pk,)] and job.state == JobState.QUEUED
    assert jobs.run(job.pk) == JobState.DONE  # what the worker does
    assert jobs.run(job.pk) == ""  # a second delivery finds it claimed
    job.refresh_from_db()
    assert (job.processed, job.failed, job.amount) == (1, 0, 2)


def test_a_broker_that_refuses_the_job_fails_it_visibly(
    admin_client, upstream, small_jobs, monkeypatch, act
):
    sessions = make_sessions(3)

    def refuse(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(jobs.run_admin_job, "apply_async", refuse)
    act(admin_client, {"action": "pull_now", "_selected_action": [s.pk for s in sessions]})
    job = AdminJob.objects.get()
    assert job.state == JobState.FAILED and "broker refused" in job.outcome
    assert "broker refused" in admin_client.get(job_url(job)).content.decode()


def test_a_job_of_an_unknown_kind_fails_with_a_reason():
    job = AdminJob.objects.create(kind="nonsense", description="?", session_pks=[1])
    assert jobs.run(job.pk) == JobState.FAILED
    job.refresh_from_db()
    assert "No operation named 'nonsense'" in job.outcome and job.finished_at is not None


@worker_test
def test_a_real_worker_runs_the_job_and_the_page_follows_it(
    rig_factory,  # noqa: F811
    redis_url,
    client,
    monkeypatch,
    no_autopush,
):
    rig = rig_factory(redis_url)
    monkeypatch.setattr("motorhead_django.admin.actions.JOB_THRESHOLD", 5)
    sessions = rig.write(8, 4)
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    rig.start_worker("jobs", concurrency=1)
    response = client.post(
        CHANGELIST, {"action": "push_now", "_selected_action": [s.pk for s in sessions]}
    )
    job = AdminJob.objects.get()
    assert response["Location"] == job_url(job)
    rig.wait_until(lambda: AdminJob.objects.get(pk=job.pk).state == JobState.DONE)
    job.refresh_from_db()
    assert (job.processed, job.failed, job.amount) == (8, 0, 32)
    assert all(len(rig.server.stored_messages(s.remote_id)) == 4 for s in sessions)
    page = client.get(job_url(job)).content.decode()
    assert "8 of 8 sessions (100%)" in page and "Pushed 32 message(s) of 8 sessions." in page
