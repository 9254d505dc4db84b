"""REST export (data-subject access): a user's sessions, or one session, streamed."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request

from motorhead_django import export, governance, policy
from motorhead_django.models import ChatSession, ReadAudit

from .rest import RestView
from .serializers import validate_text_param

# The answer streams text in the asked format; another user's export is a 403 without
# the permission, a 404 for an unknown username.
_BINARY: dict[Any, Any] = {
    (200, "application/jsonl"): OpenApiTypes.STR,
    (200, "text/markdown"): OpenApiTypes.STR,
    403: OpenApiTypes.OBJECT,
    404: OpenApiTypes.OBJECT,
}
_FORMAT = OpenApiParameter("format", OpenApiTypes.STR, enum=list(export.FORMATS))
_USER = OpenApiParameter(
    "user", OpenApiTypes.STR, description="A username; another user's needs the view permission."
)


def _format(request: Request) -> str:
    fmt = request.query_params.get("format", "jsonl")
    if fmt not in export.FORMATS:
        raise exceptions.ValidationError({"format": [f"One of {', '.join(export.FORMATS)}."]})
    return fmt


def _stream(chunks: Any, fmt: str) -> StreamingHttpResponse:
    kind = "application/jsonl; charset=utf-8" if fmt == "jsonl" else "text/markdown; charset=utf-8"
    response = StreamingHttpResponse(chunks, content_type=kind)
    suffix = "jsonl" if fmt == "jsonl" else "md"
    response["Content-Disposition"] = f'attachment; filename="motorhead-export.{suffix}"'
    return response


class _ExportView(RestView):
    serializer_class = None

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # "format" names the export here, not one of DRF's renderers: the answer streams.
        return super().perform_content_negotiation(request, force=True)


class UserExportView(_ExportView):
    """``GET``: everything held for the caller (or, with the view permission, ``?user=``)."""

    @extend_schema(tags=["export"], parameters=[_FORMAT, _USER], responses=_BINARY)
    def get(self, request: Request) -> Any:
        fmt = _format(request)
        user: Any = request.user
        name = request.query_params.get("user")
        if name is not None and name != user.get_username():
            validate_text_param("user", name, 150)
            if not policy.holds(user, policy.VIEW):
                raise exceptions.PermissionDenied(
                    {"user": ["Another user's export needs the view permission."]}
                )
            users = get_user_model()
            user = users._default_manager.filter(**{users.USERNAME_FIELD: name}).first()
            if user is None:
                raise exceptions.NotFound({"user": ["No such user."]})
            for session in ChatSession.objects.filter(owner=user).only("pk", "owner_id").iterator():
                governance.audit_read(request, session, ReadAudit.REST)
        sessions = export.sessions_of(user)
        return _stream(export.export(sessions, fmt, subject=f"user:{user.pk}"), fmt)


class SessionExportView(_ExportView):
    """``GET``: one session (``view`` on it), streamed."""

    @extend_schema(tags=["export"], parameters=[_FORMAT], responses=_BINARY)
    def get(self, request: Request, pk: str) -> Any:
        fmt = _format(request)
        session = self.get_session()
        sessions = export.sessions_of(session=session)
        return _stream(export.export(sessions, fmt, subject=f"session:{session.pk}"), fmt)
