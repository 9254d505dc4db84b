"""API errors shared by both surfaces."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response

from ..exceptions import MotorheadValidationError


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE allows."
    default_code = "request_too_large"


def check_body_size(request: Request) -> None:
    """Refuse a body over Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` before it is parsed.

    DRF's parsers read the stream directly, so Django's own limit (applied to
    ``request.body``) does not protect JSON endpoints.
    """
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if limit is not None and length > limit:
        raise RequestTooLarge()


class CoreErrors:
    """For both surfaces' views: the body limit, and the core's refusals as field-level 400s."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        check_body_size(request)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, MotorheadValidationError):
            exc = exceptions.ValidationError({k: [v] for k, v in exc.errors.items()})
        return super().handle_exception(exc)  # type: ignore[misc]
