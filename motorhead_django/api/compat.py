"""Motorhead's own routes, served from the local records.

Mount ``motorhead_django.urls.compat_urlpatterns`` (the example project uses
``/motorhead/``) and point any Motorhead client at it. Paths, query parameters,
JSON shapes, ordering (newest first, ``WINDOW_SIZE + 1`` messages) and statuses
follow the server (../docs/api.md lists the deliberate differences). A caller
reaches only its key owner's sessions (:func:`motorhead_django.policy.compat_sessions`);
every view reads or writes through :mod:`motorhead_django.memory`.
"""

from __future__ import annotations

import time
from typing import Any, NoReturn

from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse
from django.views.decorators.common import no_append_slash
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from motorhead_django import engine, memory, policy
from motorhead_django.conf import motorhead_settings
from motorhead_django.models import ApiKey, ChatSession

from .authentication import ApiKeyAuthentication
from .errors import CoreErrors
from .parsers import MotorheadJSONParser
from .permissions import HasApiKeyOrAnonymousAllowed
from .schema import (  # (importing it registers the API-key scheme)
    CompatAutoSchema,
    PlainDescriptions,
)
from .serializers import (
    NO_CONTROL_CHARACTERS,
    HealthSerializer,
    MemoryWriteSerializer,
    MotorheadMemorySerializer,
    RetrievalResultSerializer,
    RetrievalSerializer,
    StatusSerializer,
    validate_text_param,
)
from .throttling import ScopedThrottling

_TEXT = {"type": "string", "maxLength": 255, "pattern": NO_CONTROL_CHARACTERS}
_NAMESPACE = OpenApiParameter("namespace", _TEXT, description="Default: MOTORHEAD['NAMESPACE'].")
_SESSION_ID = OpenApiParameter("session_id", {**_TEXT, "minLength": 1}, OpenApiParameter.PATH)
_TAGS = ["motorhead"]

MAX_PAGE = 100  # the server's limit
MAX_SIZE = 1000


class CompatView(PlainDescriptions, ScopedThrottling, CoreErrors, APIView):
    """Explicit policies, so a host project's DRF defaults never change them."""

    throttle_scope = "motorhead-compat"
    authentication_classes = (ApiKeyAuthentication,)
    permission_classes: tuple[type[BasePermission], ...] = (HasApiKeyOrAnonymousAllowed,)
    parser_classes = (MotorheadJSONParser,)
    renderer_classes = (JSONRenderer,)
    pagination_class = None
    schema = CompatAutoSchema()

    def permission_denied(
        self, request: Request, message: Any = None, code: Any = None
    ) -> NoReturn:
        if request.authenticators and not request.successful_authenticator:
            raise exceptions.NotAuthenticated(HasApiKeyOrAnonymousAllowed.message)
        super().permission_denied(request, message, code)

    # -- what a request may reach --------------------------------------------

    def scope(self, request: Request) -> tuple[QuerySet[ChatSession], str, Any]:
        """The sessions this caller may reach in the addressed namespace, the namespace,
        and the owner of sessions it creates (the key's owner; nobody when anonymous)."""
        key = request.auth if isinstance(request.auth, ApiKey) else None
        requested = request.query_params.get("namespace")
        if requested is not None:
            validate_text_param("namespace", requested)
        if key is not None and key.namespace is not None:
            if requested is not None and requested != key.namespace:
                raise exceptions.PermissionDenied("This API key is limited to another namespace.")
            namespace = key.namespace
        else:
            namespace = motorhead_settings.NAMESPACE if requested is None else requested
        owner = key.owner if key is not None else None
        return policy.compat_sessions(key, namespace), namespace, owner

    def session_or_none(self, request: Request, session_id: str) -> ChatSession | None:
        memory.validate_session_id(session_id)
        sessions, _, _ = self.scope(request)
        return sessions.filter(session_id=session_id).first()


class HealthView(CompatView):
    """``GET /``: the clock, in milliseconds since the epoch. No key needed."""

    permission_classes = (AllowAny,)

    @extend_schema(tags=_TAGS, responses=HealthSerializer)
    def get(self, request: Request, **kwargs: Any) -> Response:
        return Response({"now": time.time_ns() // 1_000_000})


class SessionListView(CompatView):
    """``GET /sessions``: ids, least recently written first, ``page``/``size``/``namespace``."""

    @extend_schema(
        tags=_TAGS,
        parameters=[
            OpenApiParameter("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
            OpenApiParameter("size", {"type": "integer", "minimum": 1, "maximum": MAX_SIZE}),
            _NAMESPACE,
        ],
        responses={
            200: {"type": "array", "items": {"type": "string"}},
            400: OpenApiTypes.OBJECT,
        },
        operation_id="motorhead_sessions_list",
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        page = _int_param(request, "page", 1, MAX_PAGE)
        size = _int_param(
            request, "size", 10, min(MAX_SIZE, motorhead_settings.MAX_PAGE_SIZE), "MAX_PAGE_SIZE"
        )
        sessions, _, _ = self.scope(request)
        ids = sessions.order_by("updated_at", "session_id").values_list("session_id", flat=True)
        return Response(list(ids[(page - 1) * size : page * size]))


class MemoryView(CompatView):
    """``GET|POST|DELETE /sessions/{id}/memory``."""

    @extend_schema(
        tags=_TAGS, parameters=[_SESSION_ID, _NAMESPACE], responses=MotorheadMemorySerializer
    )
    def get(self, request: Request, session_id: str, **kwargs: Any) -> Response:
        session = self.session_or_none(request, session_id)
        if session is None:
            return Response({"messages": [], "context": None, "tokens": 0})
        window = memory.get_memory(session)
        messages = [{"role": m.role, "content": m.content} for m in window.messages]
        return Response({"messages": messages, "context": window.context, "tokens": window.tokens})

    @extend_schema(
        tags=_TAGS,
        parameters=[_SESSION_ID, _NAMESPACE],
        request=MemoryWriteSerializer,
        responses={200: StatusSerializer, 400: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request, session_id: str, **kwargs: Any) -> Response:
        memory.validate_session_id(session_id)
        body = MemoryWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        _, namespace, owner = self.scope(request)
        context = body.validated_data.get("context")
        # One transaction: a batch the core refuses leaves no new session behind.
        with transaction.atomic():
            # Created on first write, in the caller's own scope (ids are per owner).
            session = memory.get_or_create_session(session_id, namespace=namespace, owner=owner)
            extra = {} if context is None else {"context": context}
            memory.append_messages(session, body.validated_data["messages"], **extra)
        return Response({"status": "Ok"})

    @extend_schema(
        tags=_TAGS, parameters=[_SESSION_ID, _NAMESPACE], responses={200: StatusSerializer}
    )
    def delete(self, request: Request, session_id: str, **kwargs: Any) -> Response:
        # Always 200, like the server: unknown ids and other owners' ids alike.
        session = self.session_or_none(request, session_id)
        if session is not None:
            engine.delete(session)
        return Response({"status": "Ok"})


class RetrievalView(CompatView):
    """``POST /sessions/{id}/retrieval``: the upstream's long-term memory, or a local search."""

    @extend_schema(
        tags=_TAGS,
        parameters=[_SESSION_ID, _NAMESPACE],
        request=RetrievalSerializer,
        responses={200: RetrievalResultSerializer(many=True), 400: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request, session_id: str, **kwargs: Any) -> Response:
        session = self.session_or_none(request, session_id)  # validates the id first
        body = RetrievalSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if session is None:
            return Response([])
        return Response(memory.retrieve(session, body.validated_data["text"]))


@no_append_slash
def not_found(request: HttpRequest, **kwargs: Any) -> JsonResponse:
    """Anything else under the compatible routes: a JSON 404 (the server's is empty)."""
    # Logged by Django like any 404: the key in a keyed path is redacted by redaction.py.
    return JsonResponse({"detail": "Not found."}, status=404)


def _int_param(
    request: Request, name: str, default: int, maximum: int, limit: str | None = None
) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return min(default, maximum)
    if not (raw.isascii() and raw.isdigit() and len(raw) < 10 and 1 <= int(raw) <= maximum):
        named = f" The limit is MOTORHEAD['{limit}']." if limit else ""
        raise exceptions.ValidationError({name: [f"A whole number from 1 to {maximum}.{named}"]})
    return int(raw)
