"""Admin for API keys: issued here (the key shown once), revoked, never edited."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from motorhead_django import memory
from motorhead_django.exceptions import MotorheadValidationError
from motorhead_django.models import ApiKey

from .actions import action
from .common import NulSafeChangelist, confirmation_page, confirmed


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ("name", "owner", "namespace")

    def clean_namespace(self) -> str | None:
        # A namespace the memory core refuses would make the key answer 400 everywhere.
        namespace = self.cleaned_data.get("namespace")
        if namespace is not None:
            try:
                memory.validate_namespace(namespace)
            except MotorheadValidationError as exc:
                raise forms.ValidationError(list(exc.errors.values())) from None
        return namespace


@admin.register(ApiKey)
class ApiKeyAdmin(NulSafeChangelist):
    """Keys are issued here and revoked, never edited.

    The full key is shown once, in the body of the page answering the add form
    (:meth:`response_add`): never in a message (a cookie), the session or a log.
    """

    form = ApiKeyForm

    list_display = (
        "name",
        "display_prefix",
        "owner",
        "namespace",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "owner__username")
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    fields = (
        "name",
        "owner",
        "namespace",
        "display_prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    readonly_fields = ("display_prefix", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Who and where a key reaches is fixed once issued: revoke and issue anew.
        fixed = ("owner", "namespace") if obj is not None else ()
        return fixed + tuple(self.readonly_fields)

    @admin.display(description=_("key starts with"))
    def display_prefix(self, obj: ApiKey) -> str:
        return f"{ApiKey.PREFIX}{obj.prefix}_…" if obj.prefix else "-"

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        # A key acts as its owner: only a superuser may issue one for someone else,
        # or *add* on keys would let a staff member act as any user (a superuser too).
        if db_field.name == "owner" and not request.user.is_superuser:
            kwargs["queryset"] = get_user_model()._default_manager.filter(pk=request.user.pk or 0)
            kwargs["initial"] = request.user.pk
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        # Kept on the instance only until response_add renders it; never saved.
        obj._issued_key = obj.set_new_secret()  # type: ignore[attr-defined]
        obj.save()

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        raw = obj.__dict__.pop("_issued_key", None)
        if raw is None:  # not issued by this request's save_model
            return super().response_add(request, obj, post_url_continue)
        opts = self.model._meta
        if "_addanother" in request.POST:
            next_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
        elif "_continue" in request.POST:
            next_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        else:
            next_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": _("Copy the new API key"),
            "opts": opts,
            "original": obj,
            "key": raw,
            "next_url": next_url,
        }
        # admin_view already sends never_cache (no-store): the page is not kept by the browser.
        return TemplateResponse(request, "admin/motorhead_django/apikey/key_issued.html", context)

    @action(description=_("Revoke the selected API keys"), permission="change")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> TemplateResponse | None:
        if not confirmed(request):
            active = queryset.filter(revoked_at__isnull=True).count()
            return confirmation_page(
                self,
                request,
                queryset.select_related("owner"),
                action="revoke",
                title=_("Are you sure?"),
                consequences=[
                    ngettext(
                        "%d active key stops working at once: every client using it gets 401.",
                        "%d active keys stop working at once: every client using them gets 401.",
                        active,
                    )
                    % active,
                    str(_("A revoked key cannot be restored; issue a new one instead.")),
                ],
            )
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            key.revoke()
            count += 1
        self.message_user(
            request,
            ngettext("Revoked %d API key.", "Revoked %d API keys.", count) % count,
            messages.SUCCESS,
        )
        return None
