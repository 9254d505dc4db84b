"""The session admin's actions: sync operations through :mod:`.actions`, and the deletes.

Every delete here refuses a selection holding a session under a legal hold
(naming them) before anything goes; the core refuses them again
(:func:`motorhead_django.governance.refuse_if_held`) should a hold arrive meanwhile.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from motorhead_django.conf import motorhead_settings
from motorhead_django.exceptions import MotorheadLegalHoldError
from motorhead_django.models import ChatSession

from . import actions
from .actions import action, operation_action
from .common import confirmed


def _held(model_admin: Any, request: HttpRequest, queryset: QuerySet[ChatSession]) -> bool:
    return bool(model_admin.refuse_held(request, queryset))


class SessionActions(admin.ModelAdmin):
    """Mixed into the session admin, after :class:`~.governance.SessionGovernanceMixin`
    (which provides ``refuse_held``)."""

    push_now = operation_action("push_now", "push", description=_("Push now"), permission="change")
    pull_now = operation_action("pull_now", "pull", description=_("Pull now"), permission="change")
    verify_now = operation_action(
        "verify_now",
        "verify",
        description=_("Verify against the server (marks drifted sessions)"),
        permission="change",
    )
    full_resync = operation_action(
        "full_resync",
        "resync",
        description=_("Full resync: push the whole history into a fresh server session"),
        permission="change",
        confirm=(
            _(
                "The server's copy of each session is deleted, then its whole local "
                "history is marked pending and pushed again, paced so that every "
                "message passes through the server's summariser."
            ),
            _("The local sessions and their messages are kept."),
        ),
    )
    rehydrate_now = operation_action(
        "rehydrate_now",
        "rehydrate",
        description=_("Rehydrate: give the server the summary and the newest window"),
        permission="change",
        confirm=(
            _(
                "The server's copy of each session is replaced with its latest summary and "
                "its newest window of messages (quick; older messages are not sent again)."
            ),
            _("The local sessions and their messages are kept."),
        ),
    )
    delete_on_server = operation_action(
        "delete_on_server",
        "delete_remote",
        description=_("Delete on the server (keep here)"),
        permission="delete",
        guard=_held,
        confirm=(
            _("The server's copy of each session (messages and summary) is deleted."),
            _(
                "The local sessions and their messages are kept, marked drifted "
                "until a full resync."
            ),
        ),
    )

    @action(description=_("Delete everywhere (here and on the server)"), permission="delete")
    def delete_everywhere(
        self, request: HttpRequest, queryset: QuerySet[ChatSession]
    ) -> HttpResponse | None:
        if self.refuse_held(request, queryset):  # type: ignore[attr-defined]
            return None
        if not confirmed(request):
            remote = (
                _(
                    "their copy on the server too; until the server confirms, each stays as a "
                    "tombstone and the delete is retried"
                )
                if motorhead_settings.SYNC_ENABLED
                else _("sync is not enabled, so a server keeps any copy it has")
            )
            return actions.confirm_sessions(
                self,
                request,
                queryset,
                "delete_everywhere",
                [
                    str(_("Each session and all its messages are deleted here, and %s.") % remote),
                    str(_("This cannot be undone.")),
                ],
            )
        keys = list(queryset.values_list("pk", flat=True))
        for session in queryset:
            self._delete(request, session, remote=True)
        waiting = ChatSession.objects.filter(pk__in=keys).count()
        self.message_user(
            request,
            ngettext(
                "Deleted %(done)d of %(count)d session.",
                "Deleted %(done)d of %(count)d sessions.",
                len(keys),
            )
            % {"done": len(keys) - waiting, "count": len(keys)}
            + (
                " " + _("%d wait for the server to confirm (retried while it is down).") % waiting
                if waiting
                else ""
            ),
        )
        return None

    @action(description=_("Delete selected %(verbose_name_plural)s"), permission="delete")
    def delete_selected(self, request: HttpRequest, queryset: QuerySet[ChatSession]) -> Any:
        """Django's own, after the legal-hold check (it ends in :meth:`delete_queryset`)."""
        if self.refuse_held(request, queryset):  # type: ignore[attr-defined]
            return None
        return django_delete_selected(self, request, queryset)

    def delete_model(self, request: HttpRequest, obj: ChatSession) -> None:
        # Through the core: with DELETE_REMOTE (the default) the server's copy goes too.
        self._delete(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ChatSession]) -> None:
        for session in queryset:
            self._delete(request, session)

    def _delete(
        self, request: HttpRequest, session: ChatSession, remote: bool | None = None
    ) -> None:
        try:
            actions.delete_session(session, remote=remote)
        except MotorheadLegalHoldError:  # a hold set since the check: the core keeps it
            self.message_user(
                request,
                _("Session “%s” came under a legal hold and was kept.") % session.session_id,
                messages.ERROR,
            )
