"""What every admin of the app shares: the paginator, the NUL guard, confirmation pages
and the list cells for long ids and times."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.timesince import timesince
from django.utils.translation import gettext_lazy as _

# A confirmation page names at most this many of the selected rows (and counts the rest).
CONFIRM_LIST_LIMIT = 100
_CONFIRM_TEMPLATE = "admin/motorhead_django/action_confirmation.html"
# Characters of a session id shown in the changelist (the whole id is its tooltip).
ID_DISPLAY_LENGTH = 40


class EstimatedCountPaginator(Paginator):
    """An unfiltered changelist of a large table counts from PostgreSQL's statistics.

    ``COUNT(*)`` reads every row; the planner's estimate is free and close
    enough to size the page links. Filtered lists and small tables count exactly.
    """

    estimate_above = 50_000

    @cached_property
    def count(self) -> int:
        query = getattr(self.object_list, "query", None)
        connection = connections[getattr(self.object_list, "db", "default")]
        if query is not None and not query.where and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [query.model._meta.db_table],
                )
                row = cursor.fetchone()
            if row and row[0] > self.estimate_above:
                return int(row[0])
        return super().count


class NulSafeChangelist(admin.ModelAdmin):
    """A changelist whose search or filter parameters hold a NUL character is Django's
    "invalid lookup" redirect (``?e=1``): PostgreSQL cannot compare with NUL (a 500)."""

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if any("\x00" in value for values in request.GET.lists() for value in values[1]):
            return HttpResponseRedirect(f"{request.path}?e=1")
        return super().changelist_view(request, extra_context)


def confirmed(request: HttpRequest) -> bool:
    """Whether this is the POST of an action's confirmation page (as Django's *delete selected*)."""
    return request.method == "POST" and request.POST.get("post") == "yes"


def confirmation_page(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    action: str,
    title: Any,
    consequences: list[str],
) -> TemplateResponse:
    """The intermediate page of a destructive action: what, how many, and what happens to them."""
    opts = model_admin.model._meta
    count = queryset.count()
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": opts,
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "select_across": request.POST.get("select_across", "0"),
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "objects": list(queryset[:CONFIRM_LIST_LIMIT]),
        "count": count,
        "more": max(0, count - CONFIRM_LIST_LIMIT),
        "noun": opts.verbose_name if count == 1 else opts.verbose_name_plural,
        "consequences": consequences,
        "cancel_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
    }
    return TemplateResponse(request, _CONFIRM_TEMPLATE, context)


def shortened(text: str) -> str:
    """``text`` cut to ID_DISPLAY_LENGTH characters, the whole of it on hover."""
    short = Truncator(text).chars(ID_DISPLAY_LENGTH)
    if short == text:
        return text
    return format_html('<span class="mh-id" title="{}">{}</span>', text, short)


def ago(moment: Any) -> str:
    """ "3 minutes ago", with the exact time on hover."""
    if moment is None:
        return ""
    exact = timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")
    words = _("%(time)s ago") % {"time": timesince(moment)}
    return format_html('<time datetime="{}" title="{}">{}</time>', moment.isoformat(), exact, words)
