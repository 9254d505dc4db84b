"""API errors shared by both surfaces."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response

from motorhead_django.conf import motorhead_settings
from motorhead_django.exceptions import (
    MotorheadLegalHoldError,
    MotorheadSessionDeletingError,
    MotorheadSessionExistsError,
    MotorheadValidationError,
)


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is larger than MAX_REQUEST_BYTES allows."
    default_code = "request_too_large"

    def __init__(self, limit: int | None = None) -> None:
        limit = motorhead_settings.MAX_REQUEST_BYTES if limit is None else limit
        super().__init__(
            f"The request body is larger than {limit} bytes "
            "(MOTORHEAD['MAX_REQUEST_BYTES'], or DATA_UPLOAD_MAX_MEMORY_SIZE when unset)."
        )


def check_body_size(request: Request) -> None:
    """Refuse a body over ``MAX_REQUEST_BYTES`` by its ``Content-Length``, before it is parsed.

    DRF's parsers read the stream directly, so Django's own limit (applied to
    ``request.body``) does not protect JSON endpoints. A body sent without a
    length is bounded while it is read (:mod:`.parsers`).
    """
    limit = motorhead_settings.MAX_REQUEST_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if limit is not None and length > limit:
        raise RequestTooLarge(limit)


class SessionConflict(APIException):
    """The core refused to create a session whose id is taken in the caller's scope."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "A session with this id already exists."
    default_code = "session_exists"


class SessionBeingDeleted(APIException):
    """A write to an id whose delete is pending on the server: retry once it is gone."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = MotorheadSessionDeletingError.message
    default_code = "session_being_deleted"

    def __init__(self, retry_after: int) -> None:
        super().__init__({"session_id": [self.default_detail]})
        self.wait = retry_after  # DRF's handler turns it into Retry-After


class LegalHoldConflict(APIException):
    """A delete refused: the session or its owner is under a legal hold."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "This session is under a legal hold and cannot be deleted."
    default_code = "legal_hold"


class CoreErrors:
    """For both surfaces' views: the body limit, and the core's refusals as field-level 400s."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        check_body_size(request)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, MotorheadSessionDeletingError):
            exc = SessionBeingDeleted(exc.retry_after)
        if isinstance(exc, MotorheadLegalHoldError):
            exc = LegalHoldConflict(exc.message)
        elif isinstance(exc, MotorheadSessionExistsError):
            exc = SessionConflict({k: [v] for k, v in exc.errors.items()})
        elif isinstance(exc, MotorheadValidationError):
            exc = exceptions.ValidationError({k: [v] for k, v in exc.errors.items()})
        response: Response = super().handle_exception(exc)  # type: ignore[misc]
        # A message may quote the input (DRF's choice errors do), and the answer is
        # rendered as UTF-8: a lone surrogate quoted there would turn it into a 500.
        response.data = _encodable(response.data)
        return response


def _encodable(data: Any) -> Any:
    if isinstance(data, dict):
        return {_encodable(key): _encodable(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_encodable(item) for item in data]
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            return data.encode("utf-8", "backslashreplace").decode("utf-8")
    return data
