"""Who may use which route."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from ..conf import motorhead_settings
from ..models import ApiKey


class HasApiKeyOrAnonymousAllowed(BasePermission):
    """A valid API key, or no key when ``COMPAT_ALLOW_ANONYMOUS`` is on."""

    message = "An API key is required (x-metal-api-key header, or /k/<key>/ in the URL)."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ApiKey) or motorhead_settings.COMPAT_ALLOW_ANONYMOUS


class IsOwnerOrStaff(BasePermission):
    """Object-level: the session's owner, or staff. Lists are filtered the same way."""

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and (user.is_staff or obj.owner_id == user.pk))
