"""The history of sync states: how many sessions were in each state, sampled by beat.

Imported by :mod:`motorhead_django.models`; the beat task that writes samples
and prunes old ones is in :mod:`motorhead_django.history`.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class SyncStateSample(models.Model):
    """Sessions per sync state at one moment: one row per sample, so a chart is one
    range scan of the ``taken_at`` index."""

    taken_at = models.DateTimeField(_("taken at"), default=timezone.now)
    counts = models.JSONField(
        _("counts"),
        default=dict,
        help_text=_(
            'Sessions per sync state, every state present: {"synced": 10, "failed": 0, …}.'
        ),
    )

    class Meta:
        verbose_name = _("sync state sample")
        verbose_name_plural = _("sync state samples")
        ordering = ("taken_at",)
        indexes = [models.Index(fields=("taken_at",), name="motorhead_state_sample_taken")]

    def __str__(self) -> str:
        return f"sync states at {self.taken_at:%Y-%m-%d %H:%M:%S}"
