"""Opt-in rate limits for both surfaces, with DRF's own throttling.

A scope is limited once it has a rate::

    REST_FRAMEWORK = {
        "DEFAULT_THROTTLE_RATES": {"motorhead-rest": "600/min", "motorhead-compat": "1200/min"},
    }

Without one only the project's ``DEFAULT_THROTTLE_CLASSES`` apply (none by default).
Limits count per user (or per client address for anonymous requests).
"""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle, ScopedRateThrottle


class MotorheadScopedThrottle(ScopedRateThrottle):
    def get_rate(self) -> str | None:
        # DRF binds its rates when it is imported; read them now, so settings changes apply.
        rate = (api_settings.DEFAULT_THROTTLE_RATES or {}).get(self.scope or "")
        return str(rate) if rate is not None else None


class ScopedThrottling:
    """Views with a ``throttle_scope`` are limited when that scope has a rate."""

    throttle_scope: str

    def get_throttles(self) -> list[BaseThrottle]:
        throttles: list[BaseThrottle] = list(super().get_throttles())  # type: ignore[misc]
        if self.throttle_scope in (api_settings.DEFAULT_THROTTLE_RATES or {}):
            throttles.append(MotorheadScopedThrottle())
        return throttles
