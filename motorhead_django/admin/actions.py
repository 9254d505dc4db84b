"""Every admin action runs through :func:`perform`, and reaches the sync engine here only.

:func:`perform` checks the permission the action declares, then runs the
operation inline (Celery eager), queues it for the workers, or, for a large
selection or an operation without a per-session task, starts a background job
with a progress page (:mod:`motorhead_django.jobs`); it reports the outcome
with the messages framework.

The block marked ENGINE is the admin's only door to the sync engine: each
operation is one small function over session keys returning
:class:`~motorhead_django.jobs.Outcome`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from motorhead_django import jobs, redaction
from motorhead_django.conf import motorhead_settings
from motorhead_django.exceptions import MotorheadError
from motorhead_django.jobs import Outcome
from motorhead_django.models import ChatSession

from .common import confirmation_page, confirmed

# ENGINE imports: used only in the ENGINE block below.
from motorhead_django import engine, outbox  # isort: skip
from motorhead_django.client import MotorheadClient  # isort: skip


# A selection at least this large runs as a background job with a progress page.
JOB_THRESHOLD = 50

# -- ENGINE: the admin's calls into the sync engine ------------------------------------
# Only the façade (motorhead_django.engine) and the outbox: nothing else in the admin
# deletes, pushes, pulls, enqueues or talks to the server.


def _outcome(result: engine.Result, amount: int, state: str, *, extra: int = 0) -> Outcome:
    error = result.error or ("busy: a worker holds the session" if result.busy else "")
    return Outcome(result.session_pk, amount=amount, extra=extra, error=error, state=state)


def _push(keys: list[int]) -> list[Outcome]:
    return [_outcome(r, r.pushed, r.state) for r in engine.drain(keys)]


def _pull(keys: list[int]) -> list[Outcome]:
    results = [engine.pull(pk) for pk in keys]
    return [_outcome(r, r.pulled, "not pulled", extra=int(r.summary)) for r in results]


def _resync(keys: list[int]) -> list[Outcome]:
    return [_outcome(r, r.pushed, r.state) for r in map(engine.resync, keys)]


def _verify(keys: list[int]) -> list[Outcome]:
    outcomes = []
    for result in map(engine.verify, keys):
        if result.error:
            outcomes.append(_outcome(result, 0, "not verified"))
        else:
            outcomes.append(
                Outcome(
                    result.session_pk,
                    amount=int(bool(result.drift)),
                    error=result.drift,
                    state="drifted",
                )
            )
    return outcomes


def _rehydrate(keys: list[int]) -> list[Outcome]:
    return [_outcome(r, r.pushed, "not rehydrated") for r in map(engine.rehydrate, keys)]


def _delete_remote(keys: list[int]) -> list[Outcome]:
    results = [engine.delete(pk, scope=engine.Scope.REMOTE) for pk in keys]
    return [_outcome(r, 0, "not deleted") for r in results]


def delete_session(session: ChatSession, *, remote: bool | None = None) -> None:
    """Delete here, and with ``remote`` (default: DELETE_REMOTE) on the server too."""
    scope = None if remote is None else engine.Scope.BOTH if remote else engine.Scope.LOCAL
    engine.delete(session, scope=scope)


def import_sessions(namespaces: list[str]) -> engine.Result:
    return engine.import_sessions(namespaces)


def schedule_import(namespaces: list[str]) -> bool:
    return outbox.import_sessions(namespaces)


def runs_inline() -> bool:
    return outbox.runs_inline()


def _schedule(task_name: str, session_pk: int) -> None:
    outbox.run(task_name, session_pk)


def check_server() -> tuple[bool, str]:
    """Whether the upstream answers ``GET /`` (short timeouts: a page waits on it)."""
    client = MotorheadClient(
        motorhead_settings.URL or "",
        api_key=motorhead_settings.API_KEY,
        client_id=motorhead_settings.CLIENT_ID,
        connect_timeout=1.0,
        read_timeout=2.0,
        user_agent=motorhead_settings.USER_AGENT,
    )
    try:
        client.health()
    except MotorheadError as exc:
        return False, redaction.error_text(exc)
    finally:
        client.close()
    return True, ""


# -- END ENGINE ------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One engine operation over selected sessions, and how its outcome reads."""

    kind: str
    run: Callable[[list[int]], list[Outcome]]
    # (sessions, amount, extra) -> the success message.
    report: Callable[[int, int, int], str]
    # The per-session Celery task a worker runs; None: a worker runs it as a job.
    task: str | None = None
    # Whether the message counts failed sessions too ("pushed 0 of 2 sessions").
    counts_failures: bool = True

    def message(self, outcomes: int, failed: int, amount: int, extra: int) -> str:
        return self.report(outcomes if self.counts_failures else outcomes - failed, amount, extra)


def _report_push(count: int, amount: int, extra: int) -> str:
    return ngettext(
        "Pushed %(messages)d message(s) of %(count)d session.",
        "Pushed %(messages)d message(s) of %(count)d sessions.",
        count,
    ) % {"messages": amount, "count": count}


def _report_pull(count: int, amount: int, extra: int) -> str:
    return ngettext(
        "Pulled %(count)d session: %(found)d message(s) found only on the server, "
        "%(summaries)d new summary version(s).",
        "Pulled %(count)d sessions: %(found)d message(s) found only on the server, "
        "%(summaries)d new summary version(s).",
        count,
    ) % {"count": count, "found": amount, "summaries": extra}


def _report_resync(count: int, amount: int, extra: int) -> str:
    return ngettext(
        "Resynced %(count)d session: %(messages)d message(s) pushed, paced.",
        "Resynced %(count)d sessions: %(messages)d message(s) pushed, paced.",
        count,
    ) % {"count": count, "messages": amount}


def _report_verify(count: int, amount: int, extra: int) -> str:
    return ngettext(
        "Verified %(count)d session against the server: %(drifted)d drifted.",
        "Verified %(count)d sessions against the server: %(drifted)d drifted.",
        count,
    ) % {"count": count, "drifted": amount}


def _report_rehydrate(count: int, amount: int, extra: int) -> str:
    return ngettext(
        "Rehydrated %(count)d session: %(messages)d message(s) and its summary sent.",
        "Rehydrated %(count)d sessions: %(messages)d message(s) and their summaries sent.",
        count,
    ) % {"count": count, "messages": amount}


def _report_delete_remote(count: int, amount: int, extra: int) -> str:
    return (
        ngettext(
            "Deleted %d session on the server; the local record is kept.",
            "Deleted %d sessions on the server; the local records are kept.",
            count,
        )
        % count
    )


OPERATIONS: dict[str, Operation] = {
    op.kind: op
    for op in (
        Operation("push", _push, _report_push, task="push_session"),
        Operation("pull", _pull, _report_pull, task="pull_session"),
        Operation("resync", _resync, _report_resync, task="resync_session"),
        Operation("verify", _verify, _report_verify),
        Operation("rehydrate", _rehydrate, _report_rehydrate),
        Operation(
            "delete_remote",
            _delete_remote,
            _report_delete_remote,
            task="delete_on_server",
            counts_failures=False,
        ),
    )
}
for _op in OPERATIONS.values():
    jobs.register(_op.kind, _op.run)


def job_report(job: Any) -> str:
    """A finished job's outcome, in the words the inline action would have used."""
    operation = OPERATIONS.get(job.kind)
    if operation is None:
        return ""
    return operation.message(job.processed, job.failed, job.amount, job.extra)


def check_permission(model_admin: admin.ModelAdmin, request: HttpRequest, permission: str) -> None:
    """Refuse unless the user holds the permission the action declares (``has_<p>_permission``)."""
    if not getattr(model_admin, f"has_{permission}_permission")(request):
        raise PermissionDenied


def sync_disabled(model_admin: admin.ModelAdmin, request: HttpRequest) -> bool:
    if motorhead_settings.SYNC_ENABLED:
        return False
    model_admin.message_user(
        request, _("Sync is not enabled: set MOTORHEAD['URL']."), messages.ERROR
    )
    return True


def perform(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[ChatSession],
    kind: str,
    *,
    permission: str,
    description: str,
) -> HttpResponse | None:
    """Run ``OPERATIONS[kind]`` over the selection: inline, queued, or as a job; and report."""
    check_permission(model_admin, request, permission)
    if sync_disabled(model_admin, request):
        return None
    operation = OPERATIONS[kind]
    keys = list(queryset.order_by("pk").values_list("pk", flat=True))
    inline = runs_inline()
    if len(keys) >= JOB_THRESHOLD or (operation.task is None and not inline):
        job = jobs.start(kind, description, keys, user=request.user)
        model_admin.message_user(
            request,
            ngettext(
                "Started a background job for %d session; this page follows its progress.",
                "Started a background job for %d sessions; this page follows its progress.",
                len(keys),
            )
            % len(keys),
        )
        return HttpResponseRedirect(
            reverse("admin:motorhead_django_adminjob_change", args=[job.pk])
        )
    if not inline:
        assert operation.task is not None
        for pk in keys:
            _schedule(operation.task, pk)
        model_admin.message_user(
            request,
            ngettext(
                "Queued %d session for a worker.", "Queued %d sessions for a worker.", len(keys)
            )
            % len(keys),
        )
        return None
    outcomes = operation.run(keys)
    failed = [o for o in outcomes if o.error]
    model_admin.message_user(
        request,
        operation.message(
            len(outcomes),
            len(failed),
            sum(o.amount for o in outcomes),
            sum(o.extra for o in outcomes),
        ),
    )
    report_errors(model_admin, request, failed)
    return None


def report_errors(
    model_admin: admin.ModelAdmin, request: HttpRequest, failed: list[Outcome]
) -> None:
    """One error message per failed session; the server's text only for holders of *change*."""
    names = dict(
        ChatSession.objects.filter(pk__in=[o.session_pk for o in failed]).values_list(
            "pk", "session_id"
        )
    )
    detailed = model_admin.has_change_permission(request)
    for outcome in failed:
        error = outcome.error
        if not detailed:  # a delete-only user learns the outcome, not the server's text
            error = str(_("the server refused (details need the change permission)"))
        model_admin.message_user(
            request,
            # Not led by the id: the admin capitalises a message's first letter.
            _("Session “%(session)s” is %(state)s: %(error)s")
            % {
                "session": names.get(outcome.session_pk, outcome.session_pk),
                "state": outcome.state,
                "error": error,
            },
            messages.ERROR,
        )


def import_from_server(model_admin: admin.ModelAdmin, request: HttpRequest) -> None:
    """The overview page's import: every session the server lists, for the given namespaces."""
    check_permission(model_admin, request, "add")
    if sync_disabled(model_admin, request):
        return
    text = request.POST.get("namespaces", "").strip()
    namespaces = [ns.strip() for ns in text.split(",")] if text else [motorhead_settings.NAMESPACE]
    if not runs_inline():
        if schedule_import(namespaces):
            model_admin.message_user(request, _("Queued an import from the server for a worker."))
        else:
            model_admin.message_user(request, _("The broker refused the import."), messages.ERROR)
        return
    detailed = model_admin.has_change_permission(request)
    try:
        result = import_sessions(namespaces)
    except MotorheadError as exc:
        detail = exc if detailed else _("the server refused")
        model_admin.message_user(
            request, _("Could not list the server's sessions: %s") % detail, messages.ERROR
        )
        return
    model_admin.message_user(
        request,
        _("Imported %(imported)d session(s) from the server; %(skipped)d were here already.")
        % {"imported": result.sessions, "skipped": result.skipped},
    )
    problems = [problem for problem in [*result.notes, result.error] if problem]
    if problems and not detailed:
        problems = [
            ngettext(
                "%d problem (details need the change permission).",
                "%d problems (details need the change permission).",
                len(problems),
            )
            % len(problems)
        ]
    for problem in problems:
        model_admin.message_user(request, _("Import: %s") % problem, messages.WARNING)


# -- declaring actions -----------------------------------------------------------------

ActionFunc = Callable[[Any, HttpRequest, QuerySet[Any]], HttpResponse | None]


def action(*, description: Any, permission: str) -> Callable[[ActionFunc], ActionFunc]:
    """``@admin.action`` whose permission is also checked when it runs, not only when listed."""

    def wrap(func: ActionFunc) -> ActionFunc:
        @functools.wraps(func)
        def checked(model_admin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
            check_permission(model_admin, request, permission)
            return func(model_admin, request, queryset)

        return admin.action(description=description, permissions=[permission])(checked)

    return wrap


def operation_action(
    name: str,
    kind: str,
    *,
    description: Any,
    permission: str,
    confirm: Sequence[Any] = (),
    guard: Callable[[Any, HttpRequest, QuerySet[ChatSession]], bool] | None = None,
) -> ActionFunc:
    """The session action ``name`` (its attribute): ``OPERATIONS[kind]`` via :func:`perform`.

    ``confirm`` lists what happens, for a confirmation page first; ``guard``
    may refuse the selection (it reports why and returns True).
    """

    def run(model_admin: Any, request: HttpRequest, queryset: QuerySet[ChatSession]) -> Any:
        if sync_disabled(model_admin, request):
            return None
        if guard is not None and guard(model_admin, request, queryset):
            return None
        if confirm and not confirmed(request):
            return confirm_sessions(model_admin, request, queryset, name, confirm)
        return perform(
            model_admin,
            request,
            queryset,
            kind,
            permission=permission,
            description=str(description),
        )

    run.__name__ = run.__qualname__ = name
    return action(description=description, permission=permission)(run)


def confirm_sessions(
    model_admin: Any,
    request: HttpRequest,
    queryset: QuerySet[ChatSession],
    action_name: str,
    what: Sequence[Any],
) -> HttpResponse:
    """The confirmation page of a session action: what happens, to how many messages, and how."""
    total = queryset.aggregate(n=Sum("last_sequence"))["n"] or 0
    if queryset.count() >= JOB_THRESHOLD:
        how = _("A background job runs it; its page shows the progress.")
    elif runs_inline():
        how = _("It runs now, in this request.")
    else:
        how = _("One task per session is queued for the workers.")
    return confirmation_page(
        model_admin,
        request,
        queryset.order_by("session_id"),
        action=action_name,
        title=_("Are you sure?"),
        consequences=[
            *(str(line) for line in what),
            ngettext(
                "The selection holds %d message in all.",
                "The selection holds %d messages in all.",
                total,
            )
            % total,
            str(how),
        ],
    )
