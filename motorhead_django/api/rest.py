"""REST resources over the local records: sessions, their messages, memory and sync status.

Mount ``motorhead_django.urls.rest_urlpatterns`` (the example project uses
``/api/``). Who may reach which session is :mod:`motorhead_django.policy`: users
reach their own sessions, others' only with the model permission for the action
(``is_staff`` grants nothing); a session out of reach is a 404, like a missing
one, so ids do not leak. Every view names its authentication, permissions and
pagination, so a host project's DRF defaults never open it up. Writes go
through :mod:`motorhead_django.memory`.
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

from django.apps import apps
from django.db.models import Count, Max, Q, QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import exceptions, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import BasePagination, CursorPagination, PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from motorhead_django import engine, governance, memory, outbox, policy, search
from motorhead_django.conf import motorhead_settings
from motorhead_django.exceptions import MotorheadSessionExistsError
from motorhead_django.models import ChatMessage, ChatSession, MessageSyncState, ReadAudit, SyncState

from .authentication import NulSafeTokenAuthentication
from .errors import CoreErrors, SessionConflict
from .parsers import MotorheadJSONParser
from .permissions import SessionPolicy
from .schema import MotorheadAutoSchema, PlainDescriptions
from .serializers import (
    NO_CONTROL_CHARACTERS,
    ChatMessageSerializer,
    ChatSessionSerializer,
    MessagesAppendSerializer,
    MessagesBatchSerializer,
    MessageSerializer,
    MotorheadMemorySerializer,
    RestRetrievalSerializer,
    RetrievalResultSerializer,
    SearchResultSerializer,
    SessionUpdateSerializer,
    StatusSerializer,
    SyncStatusSerializer,
    SyncTriggerSerializer,
    validate_text_param,
)
from .throttling import ScopedThrottling

ORDERINGS = ("created_at", "updated_at", "session_id", "message_count", "last_activity")
_ORDERING_VALUES = (*ORDERINGS, *(f"-{o}" for o in ORDERINGS))
_TAGS = ["sessions"]
_TEXT = {"type": "string", "maxLength": 255, "pattern": NO_CONTROL_CHARACTERS}
_LIST_PARAMETERS = [
    OpenApiParameter("sync_state", OpenApiTypes.STR, enum=SyncState.values),
    OpenApiParameter("namespace", _TEXT),
    OpenApiParameter("owner", {"type": "integer", "minimum": 0}, description="A user id."),
    OpenApiParameter("created_after", OpenApiTypes.DATETIME),
    OpenApiParameter("created_before", OpenApiTypes.DATETIME),
    OpenApiParameter("updated_after", OpenApiTypes.DATETIME),
    OpenApiParameter("updated_before", OpenApiTypes.DATETIME),
    OpenApiParameter(
        "search", {**_TEXT, "maxLength": 1000}, description="In the id or any message."
    ),
    OpenApiParameter("ordering", OpenApiTypes.STR, enum=list(_ORDERING_VALUES)),
]


class _CheckedPageSize:
    """``page_size`` outside 1..max is a 400, not silently the default."""

    page_size_query_param: str | None = "page_size"
    max_page_size: int | None

    def get_page_size(self, request: Request) -> int | None:
        # MOTORHEAD['MAX_PAGE_SIZE'] caps every page, the default size included.
        cap = min(self.max_page_size or 1000, motorhead_settings.MAX_PAGE_SIZE)
        raw = request.query_params.get(self.page_size_query_param or "page_size")
        if raw is None:
            size = super().get_page_size(request)  # type: ignore[misc]
            return None if size is None else min(size, cap)
        return _whole_number(raw, "page_size", 1, cap, "MAX_PAGE_SIZE")


class SessionPagination(_CheckedPageSize, PageNumberPagination):
    page_size = 50
    max_page_size = 200

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        # A page that is not a number is bad input (400); one past the end stays a 404.
        raw = request.query_params.get(self.page_query_param)
        if raw is not None and raw not in self.last_page_strings:
            _whole_number(raw, self.page_query_param, 1, 10**9)
        return super().paginate_queryset(queryset, request, view)


class MessageCursorPagination(_CheckedPageSize, CursorPagination):
    """Conversation order; a cursor stays valid while messages are appended."""

    ordering = "sequence"
    page_size = 100
    max_page_size = 1000

    def decode_cursor(self, request: Request) -> Any:
        # DRF answers 404 for a cursor it cannot read and lets a crafted position reach
        # the query (a ValueError); both are bad input.
        raw = request.query_params.get(self.cursor_query_param)
        try:
            # DRF's decoding skips characters outside base64: "%%%" would read as no cursor.
            if raw is not None and not _BASE64.fullmatch(raw):
                raise exceptions.NotFound()
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            cursor = None
            valid = False
        else:
            position = None if cursor is None else str(cursor.position)
            valid = cursor is None or cursor.position is None or _digits(position)
        if not valid:
            raise exceptions.ValidationError({self.cursor_query_param: ["Invalid cursor."]})
        return cursor


class RestView(PlainDescriptions, ScopedThrottling, CoreErrors, GenericAPIView):
    """Explicit policies for every REST view."""

    throttle_scope = "motorhead-rest"
    permission_classes = (IsAuthenticated, SessionPolicy)
    #: The policy action of each method where it differs from policy.METHOD_ACTIONS.
    actions: dict[str, str] = {}
    pagination_class: type[BasePagination] | None = None
    # DRF's default parsers, with JSON's size and depth bounded.
    parser_classes = (MotorheadJSONParser, FormParser, MultiPartParser)
    schema = MotorheadAutoSchema()

    def get_authenticators(self) -> list[Any]:
        # Token first: its WWW-Authenticate header turns "no credentials" into a 401.
        classes: list[type] = [SessionAuthentication]
        if apps.is_installed("rest_framework.authtoken"):
            classes.insert(0, NulSafeTokenAuthentication)
        return [cls() for cls in classes]

    def policy_action(self, request: Request) -> str:
        """What this request does to a session: ``view``, ``change`` or ``delete``."""
        method = request.method or "GET"
        return self.actions.get(method) or policy.METHOD_ACTIONS[method]

    def sessions(self, action: str | None = None) -> QuerySet[ChatSession]:
        """The sessions the caller may perform ``action`` (default: this request's) on."""
        action = action or self.policy_action(self.request)
        return policy.visible_to(self.request.user, action)

    def get_queryset(self) -> QuerySet[Any]:
        # DRF asks for it outside the handlers (OPTIONS metadata, the browsable API):
        # the sessions this request may act on, never more.
        return self.sessions()

    def get_object(self) -> Any:
        # OPTIONS checks a PUT through get_object: the same lookup as the handlers.
        return self.get_session()

    def get_session(self, query: QuerySet[ChatSession] | None = None) -> ChatSession:
        """The session of this URL if the caller may do this request's action on it, from
        ``query`` (annotated, say) when given. Out of reach is a 404, as missing is; a
        session the caller may read but not change or delete is a 403."""
        pk = _pk(self.kwargs["pk"])
        action = self.policy_action(self.request)
        query = ChatSession.objects.all() if query is None else query
        session = policy.visible_to(self.request.user, action, query).filter(pk=pk).first()
        if session is None:
            if action != policy.VIEW and self.sessions(policy.VIEW).filter(pk=pk).exists():
                raise exceptions.PermissionDenied(f"You may not {action} this session.")
            raise exceptions.NotFound()
        self.check_object_permissions(self.request, session)
        if action == policy.VIEW and session.owner_id != self.request.user.pk:
            governance.audit_read(self.request, session, ReadAudit.REST)
        return session


class SessionListView(RestView):
    """``GET``: the caller's sessions (paged, filtered, searched, ordered). ``POST``: a new one."""

    serializer_class = ChatSessionSerializer
    pagination_class = SessionPagination
    actions = {"POST": policy.VIEW}  # a user creates their own sessions: no permission needed

    def get_queryset(self) -> QuerySet[ChatSession]:
        params = self.request.query_params
        query = self.sessions()
        if "sync_state" in params:
            if params["sync_state"] not in SyncState.values:
                choices = ", ".join(SyncState.values)
                raise exceptions.ValidationError({"sync_state": [f"One of {choices}."]})
            query = query.filter(sync_state=params["sync_state"])
        if "namespace" in params:
            query = query.filter(namespace=validate_text_param("namespace", params["namespace"]))
        if "owner" in params:
            query = query.filter(owner_id=_pk(params["owner"], "owner"))
        for name, lookup in (
            ("created_after", "created_at__gte"),
            ("created_before", "created_at__lt"),
            ("updated_after", "updated_at__gte"),
            ("updated_before", "updated_at__lt"),
        ):
            if name in params:
                query = query.filter(**{lookup: _datetime(params[name], name)})
        if params.get("search"):
            text = validate_text_param("search", params["search"], max_length=1000)
            query = search.sessions_matching(query, text)
        ordering = params.get("ordering", "-created_at")
        if ordering not in _ORDERING_VALUES:
            choices = ", ".join(_ORDERING_VALUES)
            raise exceptions.ValidationError({"ordering": [f"One of {choices}."]})
        if ordering.lstrip("-") in _ACTIVITY:
            query = _annotated(query)  # ordered by them: every session's are needed
        return query.order_by(ordering, "-pk")

    @extend_schema(
        tags=_TAGS,
        parameters=_LIST_PARAMETERS,
        responses=ChatSessionSerializer(many=True),
        operation_id="sessions_list",
    )
    def get(self, request: Request) -> Response:
        page = _with_activity(self.paginate_queryset(self.get_queryset()) or [])
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        tags=_TAGS,
        responses={201: ChatSessionSerializer, 400: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        extra = {"context": data["context"]} if "context" in data else {}
        try:
            session = memory.create_session(
                data["session_id"],
                namespace=data.get("namespace", motorhead_settings.NAMESPACE),
                owner=request.user,
                metadata=data.get("metadata"),
                **extra,
            )
        except MotorheadSessionExistsError:
            # Ids are per owner: only the caller's own session can be in the way.
            raise SessionConflict(
                {"session_id": ["You already have a session with this id in this namespace."]}
            ) from None
        session = _annotated(ChatSession.objects.filter(pk=session.pk)).get()
        return Response(self.get_serializer(session).data, status=status.HTTP_201_CREATED)


class SessionDetailView(RestView):
    """One session: ``GET``, ``PATCH``/``PUT`` (metadata, context), ``DELETE``."""

    serializer_class = ChatSessionSerializer

    @extend_schema(tags=_TAGS)
    def get(self, request: Request, pk: str) -> Response:
        # Only the answer needs the counts: PATCH and DELETE fetch the plain row.
        session = self.get_session(_annotated(ChatSession.objects.all()))
        return Response(self.get_serializer(session).data)

    @extend_schema(tags=_TAGS, request=SessionUpdateSerializer)
    def patch(self, request: Request, pk: str) -> Response:
        session = self.get_session()
        body = SessionUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if "legal_hold" in body.validated_data:
            if not governance.can_set_hold(request.user):
                raise exceptions.PermissionDenied(
                    {"legal_hold": ["Setting a legal hold needs motorhead_django.set_legal_hold."]}
                )
            governance.set_hold(session, body.validated_data["legal_hold"])
        _update(session, body.validated_data)
        return self.get(request, pk)

    @extend_schema(tags=_TAGS, request=SessionUpdateSerializer)
    def put(self, request: Request, pk: str) -> Response:
        return self.patch(request, pk)

    @extend_schema(tags=_TAGS, responses={204: None})
    def delete(self, request: Request, pk: str) -> Response:
        engine.delete(self.get_session())
        return Response(status=status.HTTP_204_NO_CONTENT)


class MessageListView(RestView):
    """A session's messages: ``GET`` in conversation order (cursor pages), ``POST`` one or many."""

    serializer_class = ChatMessageSerializer

    @property
    def pagination_class(self) -> type[MessageCursorPagination] | None:  # type: ignore[override]
        # Only the list is paged; a POST answers with just the messages it stored.
        return MessageCursorPagination if self.request.method == "GET" else None

    def get_queryset(self) -> QuerySet[ChatMessage]:
        # The browsable API's filter form asks for it too.
        return ChatMessage.objects.filter(session=self.get_session())

    @extend_schema(tags=_TAGS, responses=ChatMessageSerializer(many=True))
    def get(self, request: Request, pk: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        tags=_TAGS,
        request=PolymorphicProxySerializer(
            component_name="MessagesAppend",
            serializers=[MessageSerializer, MessagesBatchSerializer],
            resource_type_field_name=None,
        ),
        responses={201: ChatMessageSerializer(many=True)},
    )
    def post(self, request: Request, pk: str) -> Response:
        session = self.get_session()
        body = MessagesAppendSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        rows = memory.append_messages(session, body.validated_data["messages"])
        return Response(self.get_serializer(rows, many=True).data, status=status.HTTP_201_CREATED)


class MemoryView(RestView):
    """A session's memory the way Motorhead shapes it: the newest window, newest first."""

    serializer_class = MotorheadMemorySerializer

    @extend_schema(tags=_TAGS)
    def get(self, request: Request, pk: str) -> Response:
        window = memory.get_memory(self.get_session())
        return Response(
            {
                "messages": [{"role": m.role, "content": m.content} for m in window.messages],
                "context": window.context,
                "tokens": window.tokens,
            }
        )


class RetrievalView(RestView):
    """``POST {"text"}``: the session's nearest messages, shaped as Motorhead's retrieval."""

    serializer_class = RetrievalResultSerializer
    actions = {"POST": policy.VIEW}  # a search reads

    @extend_schema(
        tags=_TAGS,
        request=RestRetrievalSerializer,
        responses=RetrievalResultSerializer(many=True),
    )
    def post(self, request: Request, pk: str) -> Response:
        session = self.get_session()
        body = RestRetrievalSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(memory.retrieve(session, body.validated_data["text"]))


class EmbeddingsUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "The embeddings API failed; try again later."
    default_code = "embeddings_unavailable"


class SearchView(RestView):
    """``POST {"text"}``: the nearest messages across the caller's sessions (needs EMBEDDINGS)."""

    serializer_class = SearchResultSerializer
    actions = {"POST": policy.VIEW}

    def check_object_permissions(self, request: Request, obj: Any) -> None:
        pass  # no single session: the query is limited to the caller's sessions

    @extend_schema(
        tags=_TAGS,
        request=RestRetrievalSerializer,
        responses=SearchResultSerializer(many=True),
    )
    def post(self, request: Request) -> Response:
        from motorhead_django import embeddings
        from motorhead_django.llm import LLMError

        body = RestRetrievalSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if motorhead_settings.EMBEDDINGS is None:
            raise exceptions.ValidationError(
                {"text": ['Search across sessions needs MOTORHEAD["EMBEDDINGS"].']}
            )
        try:
            found = embeddings.search_sessions(self.sessions(), body.validated_data["text"])
        except LLMError as exc:
            raise EmbeddingsUnavailable() from exc
        return Response(
            [
                {
                    "session": m.session_id,
                    "session_id": m.session.session_id,
                    "sequence": m.sequence,
                    "role": m.role,
                    "content": m.content,
                    "dist": dist,
                }
                for m, dist in found
            ]
        )


class SyncView(RestView):
    """``GET``: the session's sync status. ``POST``: schedule a push (or a pull) now."""

    serializer_class = SyncStatusSerializer

    @extend_schema(tags=_TAGS)
    def get(self, request: Request, pk: str) -> Response:
        pending = Count("messages", filter=Q(messages__sync_state=MessageSyncState.PENDING))
        session = self.get_session(ChatSession.objects.annotate(pending_messages=pending))
        return Response(self.get_serializer(session).data)

    @extend_schema(
        tags=_TAGS,
        request=SyncTriggerSerializer,
        responses={202: StatusSerializer, 400: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request, pk: str) -> Response:
        session = self.get_session()
        body = SyncTriggerSerializer(data=request.data or {})
        body.is_valid(raise_exception=True)
        if not motorhead_settings.SYNC_ENABLED:
            raise exceptions.ValidationError(
                {"detail": ["Sync is off: no Motorhead URL is configured."]}
            )
        if session.sync_state == SyncState.DELETING:
            raise exceptions.ValidationError({"detail": ["The session is being deleted."]})
        if body.validated_data["action"] == "pull":
            outbox.pull(session.pk)
        else:
            outbox.push(session.pk)
        return Response({"status": "scheduled"}, status=status.HTTP_202_ACCEPTED)


_ACTIVITY = ("message_count", "last_activity")


def _annotated(query: QuerySet[ChatSession]) -> QuerySet[ChatSession]:
    return query.annotate(
        message_count=Count("messages"), last_activity=Max("messages__created_at")
    )


def _with_activity(page: list[ChatSession]) -> list[ChatSession]:
    """``message_count`` and ``last_activity`` for one page, in one grouped query.

    Annotating the list itself joins every message of every listed session (and
    its ``COUNT(*)`` too); a page needs only its own sessions' figures.
    """
    missing = [s for s in page if not hasattr(s, "message_count")]
    if missing:
        rows = (
            ChatMessage.objects.filter(session__in=[s.pk for s in missing])
            .order_by()
            .values("session")
            .annotate(count=Count("pk"), last=Max("created_at"))
        )
        figures: dict[Any, tuple[int, Any]] = {
            row["session"]: (row["count"], row["last"]) for row in rows
        }
        for session in missing:
            # The attributes _annotated() would have set, for the serializer.
            count, last = figures.get(session.pk, (0, None))
            session.message_count = count  # type: ignore[attr-defined]
            session.last_activity = last  # type: ignore[attr-defined]
    return page


def _update(session: ChatSession, data: dict[str, Any]) -> None:
    if "context" in data:
        memory.set_context(session, data["context"])
    if "metadata" in data:
        memory.set_metadata(session, data["metadata"])


def _pk(value: str, field: str | None = None) -> int:
    if value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)
    if field is None:
        raise exceptions.NotFound()
    raise exceptions.ValidationError({field: ["A whole number."]})


_BASE64 = re.compile("(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def _digits(value: str | None) -> bool:
    return value is not None and value.isascii() and value.isdigit() and len(value) < 19


def _whole_number(value: str, field: str, low: int, high: int, limit: str | None = None) -> int:
    if not (_digits(value) and low <= int(value) <= high):
        named = f" The limit is MOTORHEAD['{limit}']." if limit else ""
        raise exceptions.ValidationError({field: [f"A whole number from {low} to {high}.{named}"]})
    return int(value)


def _datetime(value: str, field: str) -> Any:
    try:
        parsed = parse_datetime(value)
        if parsed is not None and timezone.is_aware(parsed):
            # In UTC now: PostgreSQL refuses offsets past 15:59, and a time near year 1
            # or 9999 may not exist in UTC at all.
            parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        parsed = None
    if parsed is None:
        raise exceptions.ValidationError({field: ["An ISO 8601 date and time."]})
    return parsed


class ApiRootView(RestView):
    """The REST resources, and the schema and its documentation pages where the project mounts them.

    Sessions are listed at ``sessions``; one session's resources hang under
    ``sessions/{id}/`` (``messages``, ``memory``, ``retrieval``, ``sync``).
    """

    # Links only: each resource checks its own policy.
    permission_classes = (AllowAny,)  # type: ignore[assignment]

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        namespace = request.resolver_match.namespace if request.resolver_match else ""
        prefix = f"{namespace}:" if namespace else ""
        sessions = request.build_absolute_uri(reverse(f"{prefix}session-list"))
        one = sessions + "{id}/"
        body: dict[str, Any] = {
            "sessions": sessions,
            "session": one,
            "messages": one + "messages/",
            "memory": one + "memory/",
            "retrieval": one + "retrieval/",
            "sync": one + "sync/",
        }
        for name in ("schema", "swagger-ui", "redoc"):
            try:
                body[name.replace("-", "_")] = request.build_absolute_uri(reverse(name))
            except NoReverseMatch:
                continue
        return Response(body)
