"""The sync overview page: states, lag and failures as charts, the server's health, the import."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from motorhead_django import charts, history
from motorhead_django.conf import motorhead_settings
from motorhead_django.models import ChatMessage, ChatSession, SyncState

from . import actions

# How long the overview page trusts its last health check of the server.
HEALTH_CACHE_SECONDS = 30
_HEALTH_CACHE_KEY = "motorhead_django:admin:health"


class SyncOverviewMixin(admin.ModelAdmin):
    """Mixed into the session admin: its ``sync-overview/`` page."""

    # -- the sync overview page -----------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        overview = path(
            "sync-overview/",
            self.admin_site.admin_view(self.sync_overview_view),
            name="motorhead_django_sync_overview",
        )
        return [overview, *super().get_urls()]

    def sync_overview_view(self, request: HttpRequest) -> HttpResponse:
        # admin_view only checks is_staff: the page itself needs *view*, the import *add*.
        if request.method == "POST":
            if not self.has_add_permission(request):
                raise PermissionDenied
            actions.import_from_server(self, request)
            return HttpResponseRedirect(request.path)
        if not self.has_view_permission(request):
            raise PermissionDenied
        detailed = self.has_change_permission(request)
        counts = dict(
            ChatSession.objects.order_by().values_list("sync_state").annotate(n=Count("pk"))
        )
        oldest = ChatMessage.objects.pending().aggregate(oldest=Min("created_at"))["oldest"]
        failures = (
            ChatSession.objects.filter(
                sync_state__in=(SyncState.FAILED, SyncState.RETRYING, SyncState.IN_DOUBT)
            )
            .order_by("-updated_at")
            .only("pk", "session_id", "namespace", "sync_state", "last_error", "sync_attempts")[:20]
        )
        context = {
            **self.admin_site.each_context(request),
            "title": _("Motorhead sync overview"),
            "opts": self.model._meta,
            "states": [(state, label, counts.get(state, 0)) for state, label in SyncState.choices],
            "oldest_pending_age": timezone.now() - oldest if oldest else None,
            "oldest_pending_since": oldest,
            "state_chart": charts.bar_chart(
                charts.state_bars(counts, reverse("admin:motorhead_django_chatsession_changelist")),
                str(_("Sessions by sync state")),
            ),
            "lag_chart": charts.bar_chart(charts.lag_bars(), str(_("Pending messages by age"))),
            # Sessions by state over time (history.py): ?history=1d|7d|30d picks the period.
            "state_history": history.overview(request.GET.get("history")),
            # Causes are read from error texts: only for those who may see them.
            "cause_chart": (
                charts.bar_chart(causes, str(_("Failures by cause")))
                if detailed and (causes := charts.cause_bars())
                else None
            ),
            "failures": failures,
            "health": upstream_health(),
            # Error text and the upstream's address, only for those who may act on them.
            "show_details": detailed,
            "can_import": self.has_add_permission(request),
            "upstream": motorhead_settings.URL if detailed else "",
        }
        return TemplateResponse(request, "admin/motorhead_django/sync_overview.html", context)


def upstream_health() -> dict[str, Any] | None:
    """The upstream server's answer to ``GET /``, cached: the page never waits on a slow server."""
    if not motorhead_settings.URL:
        return None
    cached = cache.get(_HEALTH_CACHE_KEY)
    if cached is not None and cached["url"] == motorhead_settings.URL:
        return cached
    ok, detail = actions.check_server()
    health: dict[str, Any] = {"ok": ok, "detail": _("answering") if ok else detail}
    health.update(url=motorhead_settings.URL, checked_at=timezone.now())
    cache.set(_HEALTH_CACHE_KEY, health, HEALTH_CACHE_SECONDS)
    return health
