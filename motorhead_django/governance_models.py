"""Governance records: legal holds per owner, erasure receipts and the audit of reads.

Imported by :mod:`motorhead_django.models`; the logic that writes them is in
:mod:`motorhead_django.governance`. None of them holds message content.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class LegalHold(models.Model):
    """A hold on every session of one owner, present and future, until lifted (deleted)."""

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="motorhead_legal_hold",
    )
    reason = models.CharField(_("reason"), max_length=255, blank=True, default="")
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("set by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("set"), default=timezone.now)

    class Meta:
        verbose_name = _("legal hold")
        verbose_name_plural = _("legal holds")
        ordering = ("-created_at", "-pk")
        # The one permission that sets and lifts holds, on sessions and owners alike.
        permissions = [("set_legal_hold", _("Can set and lift legal holds"))]

    def __str__(self) -> str:
        return f"Legal hold on {self.owner}"


class ErasureReceipt(models.Model):
    """What one erasure removed, kept after the data is gone; it holds no content."""

    USER = "user"
    SESSION = "session"
    RETENTION = "retention"
    KINDS = ((USER, _("A user")), (SESSION, _("A session")), (RETENTION, _("Retention")))

    kind = models.CharField(_("kind"), max_length=16, choices=KINDS)
    subject = models.CharField(
        _("subject"),
        max_length=300,
        help_text=_("user:<pk> or session:<pk>: primary keys, not names or ids."),
    )
    counts = models.JSONField(
        _("counts"), default=dict, help_text=_("Rows erased by kind: sessions, messages, …")
    )
    ids_sha256 = models.CharField(
        _("hash of erased ids"),
        max_length=64,
        help_text=_("SHA-256 of the erased sessions' server ids, sorted, one a line."),
    )
    server_confirmed = models.BooleanField(
        _("server confirmed"),
        null=True,
        help_text=_("A read of the server found none of the sessions; empty: no server."),
    )
    server_detail = models.TextField(_("server detail"), blank=True, default="")
    held = models.PositiveIntegerField(
        _("held"), default=0, help_text=_("Sessions kept because of a legal hold.")
    )
    erased_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("erased by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    erased_by_name = models.CharField(
        _("erased by (name)"), max_length=150, blank=True, default="", editable=False
    )
    erased_at = models.DateTimeField(_("erased"), default=timezone.now)

    class Meta:
        verbose_name = _("erasure receipt")
        verbose_name_plural = _("erasure receipts")
        ordering = ("-erased_at", "-pk")
        # Erasing from the admin is its own permission: *delete* leaves a tombstone and no receipt.
        permissions = [("erase_sessions", _("Can erase sessions everywhere, with a receipt"))]
        indexes = [models.Index(fields=("subject",), name="motorhead_receipt_subject")]

    def __str__(self) -> str:
        return f"Erasure of {self.subject} at {self.erased_at:%Y-%m-%d %H:%M}"

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.pk,
            "kind": self.kind,
            "subject": self.subject,
            "counts": self.counts,
            "ids_sha256": self.ids_sha256,
            "server_confirmed": self.server_confirmed,
            "server_detail": self.server_detail,
            "held": self.held,
            "erased_by": self.erased_by_name,
            "erased_at": self.erased_at.isoformat(),
        }


class ReadAudit(models.Model):
    """One read of a conversation by someone other than its owner (or in the admin)."""

    ADMIN = "admin"
    REST = "rest"
    SURFACES = ((ADMIN, _("Admin")), (REST, _("REST API")))

    reader = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("reader"),
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reader_name = models.CharField(_("reader (name)"), max_length=150)
    session_pk = models.BigIntegerField(_("session key"))
    owner_pk = models.BigIntegerField(_("owner key"), null=True)
    surface = models.CharField(_("surface"), max_length=8, choices=SURFACES)
    path = models.CharField(_("path"), max_length=500)
    read_at = models.DateTimeField(_("read"), default=timezone.now)

    class Meta:
        verbose_name = _("read audit entry")
        verbose_name_plural = _("read audit")
        ordering = ("-read_at", "-pk")
        indexes = [
            models.Index(fields=("read_at",), name="motorhead_audit_read_at"),
            models.Index(fields=("session_pk", "-read_at"), name="motorhead_audit_session"),
        ]

    def __str__(self) -> str:
        return f"{self.reader_name} read session {self.session_pk} ({self.surface})"
