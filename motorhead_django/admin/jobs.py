"""Admin for background jobs: each user follows their own; ``view_adminjob`` shows everyone's.

A job's page refreshes itself while the job runs (a ``<meta refresh>``: no script).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from motorhead_django.job_models import AdminJob

from .actions import job_report
from .common import NulSafeChangelist, ago

# Seconds between two refreshes of a running job's page.
REFRESH_SECONDS = 2
VIEW_ALL = "motorhead_django.view_adminjob"


@admin.register(AdminJob)
class AdminJobAdmin(NulSafeChangelist):
    change_form_template = "admin/motorhead_django/adminjob/change_form.html"
    list_display = ("description", "state", "progress", "user", "started")
    list_filter = ("state", "kind")
    list_select_related = ("user",)
    fields = ("description", "state", "progress", "rate", "user", "created_at", "finished_at")
    readonly_fields = fields

    def _sees_all(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.has_perm(VIEW_ALL))

    def get_queryset(self, request: HttpRequest) -> QuerySet[AdminJob]:
        jobs = super().get_queryset(request)
        return jobs if self._sees_all(request) else jobs.filter(user_id=request.user.pk or 0)

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> AdminJob | None:
        # Not the list's filter: another user's job is then refused (403) by the
        # permission methods, on every page alike.
        if not (str(object_id).isascii() and str(object_id).isdigit()):
            return None
        return AdminJob.objects.filter(pk=int(object_id)).first()

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if self._sees_all(request):
            return True
        if not (request.user.is_active and request.user.is_staff and request.user.pk):
            return False
        if obj is not None:
            return bool(obj.user_id == request.user.pk)
        return AdminJob.objects.filter(user_id=request.user.pk).exists()

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # started by the session actions only

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The delete permission alone does not reach another user's job (its page shows it).
        if obj is not None and not self._sees_all(request) and obj.user_id != request.user.pk:
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description=_("progress"))
    def progress(self, obj: AdminJob) -> str:
        text = _("%(processed)d of %(total)d sessions (%(percent)d%%)") % {
            "processed": obj.processed,
            "total": obj.total,
            "percent": obj.percent,
        }
        if obj.failed:
            text += " · " + str(_("%d failed") % obj.failed)
        return str(text)

    @admin.display(description=_("rate"))
    def rate(self, obj: AdminJob) -> str:
        rate = obj.rate
        if rate is None:
            return "-"
        text = str(_("%.1f sessions a second") % rate)
        eta = obj.eta_seconds
        if eta is not None:
            text += " · " + str(_("about %d s left") % round(eta))
        return text

    @admin.display(description=_("started"), ordering="created_at")
    def started(self, obj: AdminJob) -> str:
        return ago(obj.created_at)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        job = self.get_object(request, object_id)
        context: dict[str, Any] = {**(extra_context or {})}
        if job is not None:
            # Error texts are the server's: only for those who may act on sessions.
            detailed = request.user.has_perm("motorhead_django.change_chatsession")
            context.update(
                job=job,
                refresh=0 if job.finished else REFRESH_SECONDS,
                report=job_report(job) if job.finished else "",
                job_errors=job.errors if detailed else [],
                hidden_errors=job.failed if not detailed else 0,
            )
        return super().change_view(request, object_id, form_url, context)
