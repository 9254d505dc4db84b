"""Admin for governance: legal holds, erasure receipts (read-only), the read audit
(superusers only), and the session admin's hold, export, erasure and audit behaviour."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from motorhead_django import export, governance
from motorhead_django.exceptions import MotorheadLegalHoldError
from motorhead_django.models import ChatSession, ErasureReceipt, LegalHold, ReadAudit

from .actions import action
from .common import NulSafeChangelist, confirmation_page, confirmed

# A refusal names at most this many held sessions (and counts the rest).
HELD_NAMES_LIMIT = 10

GOVERNANCE_FIELDSET = (
    _("Governance"),
    {"fields": ("legal_hold", "retention_days", "retention_messages")},
)


class SessionGovernanceMixin(admin.ModelAdmin):
    """For the session admin: held sessions cannot be deleted, the hold needs its permission,
    every opened conversation is audited, and selected sessions can be exported."""

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: Any = None
    ) -> HttpResponse:
        session = ChatSession.objects.filter(pk=_int(unquote(object_id))).first()
        if session is not None and governance.is_held(session):
            self.message_user(
                request,
                _("This session is under a legal hold and cannot be deleted."),
                messages.ERROR,
            )
            return HttpResponseRedirect(
                reverse("admin:motorhead_django_chatsession_change", args=(session.pk,))
            )
        return super().delete_view(request, object_id, extra_context)

    def hold_readonly(self, request: HttpRequest) -> tuple[str, ...]:
        return () if governance.can_set_hold(request.user) else ("legal_hold",)

    def has_erase_permission(self, request: HttpRequest) -> bool:
        return governance.can_erase(request.user)

    def refuse_held(self, request: HttpRequest, queryset: QuerySet[ChatSession]) -> bool:
        """Whether the selection holds sessions under a legal hold: then say which, and
        delete none of it (a partial delete of a selection is a surprise, not a help)."""
        held = list(
            queryset.filter(governance.held())
            .order_by("session_id")
            .values_list("session_id", flat=True)[: HELD_NAMES_LIMIT + 1]
        )
        if not held:
            return False
        count = queryset.filter(governance.held()).count()
        names = ", ".join(f"“{name}”" for name in held[:HELD_NAMES_LIMIT])
        if count > HELD_NAMES_LIMIT:
            names += " " + str(_("and %d more") % (count - HELD_NAMES_LIMIT))
        self.message_user(
            request,
            ngettext(
                "Nothing was deleted: %(count)d selected session is under a legal hold: %(names)s.",
                "Nothing was deleted: %(count)d selected sessions are under a legal hold: "
                "%(names)s.",
                count,
            )
            % {"count": count, "names": names},
            messages.ERROR,
        )
        return True

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: Any = None,
    ) -> HttpResponse:
        response = super().changeform_view(request, object_id, form_url, extra_context)
        if object_id is not None and request.method == "GET" and response.status_code == 200:
            session = ChatSession.objects.filter(pk=_int(unquote(object_id))).first()
            if session is not None:
                governance.audit_read(request, session, ReadAudit.ADMIN)
        return response

    def _export(self, request: HttpRequest, queryset: QuerySet[ChatSession], fmt: str) -> Any:
        keys = list(queryset.values_list("pk", flat=True))
        sessions = ChatSession.objects.filter(pk__in=keys)
        for session in sessions:
            governance.audit_read(request, session, ReadAudit.ADMIN)
        suffix = "jsonl" if fmt == "jsonl" else "md"
        response = StreamingHttpResponse(
            export.export(sessions, fmt),
            content_type="application/jsonl" if fmt == "jsonl" else "text/markdown",
        )
        response["Content-Disposition"] = f'attachment; filename="motorhead-export.{suffix}"'
        return response

    # *change*, like every session action: an export is recorded in the read audit. It
    # streams (constant memory), so a large selection needs no background job.
    @action(description=_("Export as JSON Lines"), permission="change")
    def export_jsonl(self, request: HttpRequest, queryset: QuerySet[ChatSession]) -> Any:
        return self._export(request, queryset, "jsonl")

    @action(description=_("Export as a Markdown transcript"), permission="change")
    def export_markdown(self, request: HttpRequest, queryset: QuerySet[ChatSession]) -> Any:
        return self._export(request, queryset, "markdown")

    @action(description=_("Erase everywhere, verified, with a receipt"), permission="erase")
    def erase_everywhere(self, request: HttpRequest, queryset: QuerySet[ChatSession]) -> Any:
        if self.refuse_held(request, queryset):
            return None
        if not confirmed(request):
            return confirmation_page(
                self,
                request,
                queryset.order_by("session_id"),
                action="erase_everywhere",
                title=_("Are you sure?"),
                consequences=[
                    str(_("Each session, its messages, summaries and embeddings are erased here.")),
                    str(
                        _(
                            "Its copy on the server is deleted, then the server is read back to "
                            "confirm nothing of it is left."
                        )
                    ),
                    str(
                        _(
                            "An erasure receipt is kept (counts, time, who, the server's answer, "
                            "a hash of the ids; no content). This cannot be undone."
                        )
                    ),
                ],
            )
        receipts = []
        for session in queryset.order_by("pk"):
            try:
                receipts.append(governance.erase_session(session, by=request.user).receipt)
            except MotorheadLegalHoldError:  # held since the check: kept, and said
                self.message_user(
                    request,
                    _("Session “%s” came under a legal hold and was kept.") % session.session_id,
                    messages.ERROR,
                )
        confirmed_count = sum(1 for receipt in receipts if receipt.server_confirmed)
        self.message_user(
            request,
            ngettext(
                "Erased %(count)d session; the server confirmed %(confirmed)d. The receipt "
                "follows.",
                "Erased %(count)d sessions; the server confirmed %(confirmed)d. The receipts "
                "follow.",
                len(receipts),
            )
            % {"count": len(receipts), "confirmed": confirmed_count},
            messages.SUCCESS
            if all(r.server_confirmed is not False for r in receipts)
            else messages.WARNING,
        )
        if not receipts:
            return None
        if len(receipts) == 1:
            url = reverse("admin:motorhead_django_erasurereceipt_change", args=[receipts[0].pk])
        else:
            keys = ",".join(str(receipt.pk) for receipt in receipts)
            url = reverse("admin:motorhead_django_erasurereceipt_changelist") + f"?id__in={keys}"
        return HttpResponseRedirect(url)


def _int(value: str) -> int:
    return int(value) if value.isascii() and value.isdigit() else -1


@admin.register(LegalHold)
class LegalHoldAdmin(NulSafeChangelist):
    """Holds on owners: added and lifted (deleted) with ``set_legal_hold`` only."""

    list_display = ("owner", "reason", "set_by", "created_at")
    raw_id_fields = ("owner",)
    fields = ("owner", "reason", "set_by", "created_at")
    readonly_fields = ("set_by", "created_at")

    def _holder(self, request: HttpRequest) -> bool:
        return governance.can_set_hold(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._holder(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._holder(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._holder(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._holder(request) or super().has_view_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: LegalHold, form: Any, change: bool) -> None:
        if not change:
            obj.set_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)


class _ReadOnly(NulSafeChangelist):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ErasureReceipt)
class ErasureReceiptAdmin(_ReadOnly):
    """Receipts are evidence: nobody edits or deletes them here. Those who may erase may
    read them (the erase action leads here)."""

    list_display = ("erased_at", "kind", "subject", "counts", "server_confirmed", "erased_by_name")
    list_filter = ("kind", "server_confirmed")
    search_fields = ("subject", "ids_sha256")
    date_hierarchy = "erased_at"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return governance.can_erase(request.user) or super().has_view_permission(request, obj)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request) or super().has_module_permission(request)


@admin.register(ReadAudit)
class ReadAuditAdmin(_ReadOnly):
    """Who read which conversation: superusers only."""

    list_display = ("read_at", "reader_name", "session_pk", "owner_pk", "surface", "path")
    list_filter = ("surface",)
    search_fields = ("reader_name", "path")
    date_hierarchy = "read_at"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)
