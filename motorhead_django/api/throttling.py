"""Rate limits for both surfaces, on by default, with DRF's throttling and Django's cache.

``MOTORHEAD['THROTTLE_RATES']`` names four scopes (docs/security.md has the defaults)::

    "rest"            requests to the REST resources, per user
    "compat"          requests to the Motorhead-compatible routes, per key owner
                      (per client address when anonymous)
    "auth-address"    failed API-key or token authentications, per client address
    "auth-prefix"     failed authentications, per key prefix (``mhd_<prefix>_…``; a
                      token's first 8 characters)

A rate is DRF's ``"<count>/<s|min|hour|day>"``; ``None`` turns the scope off. A
rate for ``motorhead-rest`` / ``motorhead-compat`` in ``REST_FRAMEWORK
['DEFAULT_THROTTLE_RATES']`` (the earlier way) wins over the default but not
over ``THROTTLE_RATES``. Over a limit is a ``429`` with ``Retry-After``; once an
address or a prefix has failed too often, every attempt from it is refused until
the window passes (so a correct guess is refused as well: that is the point).
"""

from __future__ import annotations

import hashlib
from typing import Any

from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle, ScopedRateThrottle, SimpleRateThrottle

from motorhead_django.conf import motorhead_settings

# The DRF scope names of the two request throttles, and the settings key of each.
_REQUEST_SCOPES = {"motorhead-rest": "rest", "motorhead-compat": "compat"}


def rate(scope: str) -> str | None:
    """The rate of a ``THROTTLE_RATES`` scope, after the project's settings."""
    user = motorhead_settings.raw
    explicit = user.get("THROTTLE_RATES") if isinstance(user, dict) else None
    if isinstance(explicit, dict) and scope in explicit:
        return explicit[scope]
    for drf_scope, name in _REQUEST_SCOPES.items():
        if name == scope and drf_scope in (api_settings.DEFAULT_THROTTLE_RATES or {}):
            return str(api_settings.DEFAULT_THROTTLE_RATES[drf_scope])
    return motorhead_settings.THROTTLE_RATES.get(scope)


def client_address(request: Request) -> str | None:
    """The client address the throttles count by.

    ``REMOTE_ADDR``, unless ``REST_FRAMEWORK['NUM_PROXIES']`` is set: then DRF's rule
    (the address that many hops from the right of ``X-Forwarded-For``). DRF's own
    default trusts ``X-Forwarded-For`` whenever ``NUM_PROXIES`` is ``None``, so a
    client could rotate it to dodge a limit or spoof another's address to lock it out.
    """
    if api_settings.NUM_PROXIES is None:
        address = request.META.get("REMOTE_ADDR")
        return str(address) if address is not None else None
    ident = BaseThrottle().get_ident(request)
    return str(ident) if ident is not None else None


class MotorheadScopedThrottle(ScopedRateThrottle):
    """DRF's scoped throttle, with its rate read at request time from :func:`rate`
    and anonymous callers counted by :func:`client_address`."""

    def get_ident(self, request: Request) -> str:
        return client_address(request) or ""

    def get_rate(self) -> str | None:
        return rate(_REQUEST_SCOPES.get(self.scope or "", self.scope or ""))


class ScopedThrottling:
    """Views with a ``throttle_scope`` are limited while that scope has a rate."""

    throttle_scope: str

    def get_throttles(self) -> list[BaseThrottle]:
        throttles: list[BaseThrottle] = list(super().get_throttles())  # type: ignore[misc]
        if rate(_REQUEST_SCOPES.get(self.throttle_scope, self.throttle_scope)):
            throttles.append(MotorheadScopedThrottle())
        return throttles


class _FailureCounter(SimpleRateThrottle):
    """Failures in a sliding window, kept in Django's cache like DRF's own throttles."""

    cache_format = "motorhead-throttle-%(scope)s-%(ident)s"

    def __init__(self, scope: str, ident: str) -> None:
        # SimpleRateThrottle.__init__ reads a class-level rate; ours is per scope.
        self.scope = scope
        self.rate = rate(scope)
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.key = self.cache_format % {"scope": scope, "ident": ident}

    def wait_if_blocked(self) -> float | None:
        """Seconds until the next attempt is allowed, or None when it is allowed now."""
        if self.rate is None or self.num_requests is None or self.duration is None:
            return None
        self.now = self.timer()
        self.history = [t for t in self.cache.get(self.key, []) if t > self.now - self.duration]
        if len(self.history) < self.num_requests:
            return None
        return max(1.0, self.history[-1] + self.duration - self.now)

    def add(self) -> None:
        if self.rate is None or self.duration is None:
            return
        self.now = self.timer()
        history = [t for t in self.cache.get(self.key, []) if t > self.now - self.duration]
        self.cache.set(self.key, [self.now, *history][: self.num_requests], self.duration)


class FailedAuthentication:
    """The failed-authentication throttle of one attempt: by address and by key prefix.

    ``check()`` before the credentials are verified, ``failed()`` when they are wrong.
    """

    def __init__(self, request: Request, prefix: str | None) -> None:
        address = client_address(request)
        self.counters = [_FailureCounter("auth-address", _ident(address))]
        if prefix:
            self.counters.append(_FailureCounter("auth-prefix", _ident(prefix)))

    def check(self) -> None:
        waits = [wait for counter in self.counters if (wait := counter.wait_if_blocked())]
        if waits:
            raise exceptions.Throttled(
                wait=max(waits), detail="Too many failed authentications; retry later."
            )

    def failed(self) -> None:
        for counter in self.counters:
            counter.add()


def _ident(value: Any) -> str:
    # Cache keys stay short and printable whatever a client sends; nothing secret is kept.
    return hashlib.sha256(str(value).encode("utf-8", "surrogatepass")).hexdigest()[:32]
