"""API keys for the Motorhead-compatible routes.

A key arrives either in the hosted variant's headers (``x-metal-api-key``,
optionally ``x-metal-client-id`` = the key's prefix) or in the base URL
(``…/motorhead/k/<key>/sessions/…``), because self-hosted clients such as
LangChain's send no headers. The key itself never appears in a response or a
log line (it is handed to :mod:`..redaction` as soon as it is read), and failed
attempts are throttled per client address and key prefix (:mod:`.throttling`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, TokenAuthentication
from rest_framework.request import Request

from motorhead_django import redaction
from motorhead_django.models import ApiKey

from .throttling import FailedAuthentication

KEY_HEADER = "HTTP_X_METAL_API_KEY"
CLIENT_ID_HEADER = "HTTP_X_METAL_CLIENT_ID"
# last_used_at is a hint for operators, not an audit log: write it at most this often.
_TOUCH_EVERY = timedelta(minutes=5)


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticates as the key's owner; ``request.auth`` is the :class:`ApiKey`."""

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        kwargs = (request.parser_context or {}).get("kwargs", {})
        raw = kwargs.get("api_key") or request.META.get(KEY_HEADER)
        if not raw:
            return None
        redaction.remember(raw)  # whatever is logged while serving this request
        throttle = FailedAuthentication(request, _key_prefix(raw))
        throttle.check()  # before the key is verified: a blocked guess learns nothing
        key = ApiKey.find(raw)
        if key is None or not key.owner.is_active:
            throttle.failed()
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        client_id = request.META.get(CLIENT_ID_HEADER)
        if client_id and client_id != key.prefix:
            throttle.failed()
            raise exceptions.AuthenticationFailed("x-metal-client-id does not match the API key.")
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > _TOUCH_EVERY:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        return key.owner, key

    def authenticate_header(self, request: Request) -> str:
        # Any value makes DRF answer 401 (not 403) to a request without a key.
        return 'x-metal-api-key realm="motorhead"'


def _key_prefix(raw: str) -> str | None:
    """The prefix part of a key shaped like ours (``mhd_<prefix>_…``), else None."""
    start = len(ApiKey.PREFIX)
    if raw.startswith(ApiKey.PREFIX) and raw[start + 8 : start + 9] == "_":
        return raw[start : start + 8]
    return None


class NulSafeTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, with a token holding a NUL character refused as invalid
    (PostgreSQL cannot compare with one, and DRF would let that surface as a 500), and
    failures throttled like the API keys' (per address and per token prefix)."""

    _request: Request | None = None

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        # DRF passes only the token on to authenticate_credentials; the throttle needs the address.
        self._request = request
        return super().authenticate(request)

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        redaction.remember(key)
        throttle = None if self._request is None else FailedAuthentication(self._request, key[:8])
        if throttle is not None:
            throttle.check()
        try:
            if "\x00" in key:
                raise exceptions.AuthenticationFailed("Invalid token.")
            return super().authenticate_credentials(key)
        except exceptions.AuthenticationFailed:
            if throttle is not None:
                throttle.failed()
            raise
