"""Background jobs started from the admin: one row per long action, its progress and outcome.

Registered with the app by :meth:`MotorheadConfig.import_models` (apps.py); the
task that runs them and updates the row is in :mod:`motorhead_django.jobs`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class JobState(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class AdminJob(models.Model):
    """One admin action over many sessions, run by a task that records its progress here."""

    kind = models.CharField(
        _("kind"), max_length=32, help_text=_("The operation: push, pull, resync, verify…")
    )
    description = models.CharField(_("description"), max_length=200)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("started by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    state = models.CharField(
        _("state"), max_length=16, choices=JobState.choices, default=JobState.QUEUED
    )
    session_pks = models.JSONField(
        _("sessions"), default=list, help_text=_("Primary keys of the selected sessions.")
    )
    total = models.PositiveIntegerField(_("total"), default=0)
    processed = models.PositiveIntegerField(
        _("processed"), default=0, help_text=_("Sessions handled so far, failed ones included.")
    )
    failed = models.PositiveIntegerField(_("failed"), default=0)
    amount = models.PositiveBigIntegerField(
        _("amount"), default=0, help_text=_("What the operation counts: messages pushed, found…")
    )
    extra = models.PositiveBigIntegerField(
        _("extra"), default=0, help_text=_("A second count: new summary versions for a pull.")
    )
    errors = models.JSONField(
        _("errors"), default=list, help_text=_("The first errors: session, state, text.")
    )
    outcome = models.TextField(_("outcome"), blank=True, default="")
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        verbose_name = _("admin job")
        verbose_name_plural = _("admin jobs")
        ordering = ("-created_at", "-pk")
        indexes = [models.Index(fields=("user", "-created_at"), name="motorhead_job_user")]

    def __str__(self) -> str:
        return f"{self.description} ({self.processed}/{self.total})"

    @property
    def finished(self) -> bool:
        return self.state in (JobState.DONE, JobState.FAILED)

    @property
    def percent(self) -> int:
        return 100 if not self.total else int(100 * self.processed / self.total)

    @property
    def rate(self) -> float | None:
        """Sessions per second since the job started."""
        if self.started_at is None or not self.processed:
            return None
        elapsed = ((self.finished_at or timezone.now()) - self.started_at).total_seconds()
        return self.processed / elapsed if elapsed > 0 else None

    @property
    def eta_seconds(self) -> float | None:
        rate = self.rate
        if rate is None or self.finished:
            return None
        return (self.total - self.processed) / rate
