"""URLs for ``bench/api_throughput.py``: the package's compatible routes, and bare views.

``/motorhead/…`` is ``motorhead_django.urls.compat_urlpatterns``, as a host
project mounts it. ``/bare/sessions/<id>/memory`` is the floor it is measured
against: a plain Django function view that runs the same SQL statements as the
compatible ``GET`` and ``POST`` (key lookup, session lookup, newest window; or
the session update, its re-read and the bulk insert in one transaction) and
returns the same bytes, with none of our layers: no DRF request, authentication
or permission class, serializer, memory core or renderer.
tests/test_bench_api.py checks that the statements and the bytes are the same.

Only what the benchmark sends is handled: a key in ``x-metal-api-key`` and,
for ``POST``, a session that already exists.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from motorhead_django.conf import motorhead_settings
from motorhead_django.models import (
    ApiKey,
    ChatMessage,
    ChatSession,
    MessageOrigin,
    MessageSyncState,
)
from motorhead_django.urls import compat_urlpatterns

# DRF's JSONRenderer writes compact UTF-8: the same bytes as the compatible views.
_DUMPS = {"separators": (",", ":"), "ensure_ascii": False}


def _json(data: Any, status: int = 200) -> JsonResponse:
    return JsonResponse(data, status=status, json_dumps_params=_DUMPS)


@csrf_exempt
def bare_memory(request: HttpRequest, session_id: str) -> JsonResponse:
    raw = request.headers.get("x-metal-api-key")
    key = ApiKey.find(raw) if raw else None
    if key is None or not key.owner.is_active:
        return _json({"detail": "Invalid or missing API key."}, 401)
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=5):
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    namespace = motorhead_settings.NAMESPACE if key.namespace is None else key.namespace
    sessions = ChatSession.objects.filter(namespace=namespace).filter(owner=key.owner)
    # As the compatible routes: a read leaves out a session being deleted (policy.compat_sessions).
    readable = ChatSession.objects.filter(namespace=namespace, delete_requested_at__isnull=True)
    readable = readable.filter(owner=key.owner)

    if request.method == "GET":
        session = readable.filter(session_id=session_id).first()
        if session is None:
            return _json({"messages": [], "context": None, "tokens": 0})
        size = motorhead_settings.WINDOW_SIZE + 1
        newest = session.messages.order_by("-sequence")[:size]
        messages = [{"role": m.role, "content": m.content} for m in newest]
        return _json({"messages": messages, "context": session.context, "tokens": session.tokens})

    if request.method != "POST":
        return _json({"detail": "Method not allowed."}, 405)
    try:
        pairs = [(m["role"], m["content"]) for m in json.loads(request.body)["messages"]]
    except (ValueError, KeyError, TypeError):
        return _json({"detail": "Bad body."}, 400)
    if not pairs or not all(isinstance(r, str) and isinstance(c, str) for r, c in pairs):
        return _json({"detail": "Bad body."}, 400)
    with transaction.atomic():
        session = sessions.filter(session_id=session_id).first()
        if session is None:
            return _json({"detail": "Not found."}, 404)
        ChatSession.objects.filter(pk=session.pk).update(
            updated_at=now, last_sequence=F("last_sequence") + len(pairs)
        )
        session.refresh_from_db()
        first = session.last_sequence - len(pairs) + 1
        ChatMessage.objects.bulk_create(
            ChatMessage(
                session=session,
                sequence=first + offset,
                role=role,
                content=content,
                origin=MessageOrigin.LOCAL,
                sync_state=MessageSyncState.SYNCED,
                synced_at=now,
            )
            for offset, (role, content) in enumerate(pairs)
        )
    return _json({"status": "Ok"})


urlpatterns = [
    path("motorhead/", include((compat_urlpatterns, "motorhead-compat"))),
    re_path(r"^bare/sessions/(?P<session_id>[\s\S]+)/memory\Z", bare_memory, name="bare-memory"),
]
