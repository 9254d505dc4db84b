"""Who may use which route."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from motorhead_django import policy
from motorhead_django.conf import motorhead_settings
from motorhead_django.models import ApiKey


class HasApiKeyOrAnonymousAllowed(BasePermission):
    """A valid API key, or no key when ``COMPAT_ALLOW_ANONYMOUS`` is on."""

    message = "An API key is required (x-metal-api-key header, or /k/<key>/ in the URL)."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ApiKey) or motorhead_settings.COMPAT_ALLOW_ANONYMOUS


class SessionPolicy(BasePermission):
    """The REST resources' rule (:mod:`motorhead_django.policy`): a signed-in user, and on
    each session the action its view names for the method. Lists are filtered the same way."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_active)

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        return policy.allows(request.user, view.policy_action(request), obj)
