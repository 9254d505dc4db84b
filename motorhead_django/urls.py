"""URL patterns for the two HTTP surfaces; mount each where you like::

    from motorhead_django.urls import compat_urlpatterns, rest_urlpatterns

    urlpatterns = [
        path("api/", include((rest_urlpatterns, "motorhead-rest"))),
        path("motorhead/", include((compat_urlpatterns, "motorhead-compat"))),
    ]

The compatible routes are served twice: at the mount point (key in the
``x-metal-api-key`` header, or anonymous when allowed) and under ``k/<key>/``
for clients that cannot send headers.
"""

from __future__ import annotations

from django.urls import include, path, re_path

from .api import compat, rest
from .api import export as export_views

# Sessions by primary key: Motorhead ids may hold slashes and any text.
rest_urlpatterns = [
    path("", rest.ApiRootView.as_view(), name="api-root"),
    path("sessions/", rest.SessionListView.as_view(), name="session-list"),
    path("sessions/<str:pk>/", rest.SessionDetailView.as_view(), name="session-detail"),
    path("sessions/<str:pk>/messages/", rest.MessageListView.as_view(), name="session-messages"),
    path("sessions/<str:pk>/memory/", rest.MemoryView.as_view(), name="session-memory"),
    path("sessions/<str:pk>/retrieval/", rest.RetrievalView.as_view(), name="session-retrieval"),
    path("sessions/<str:pk>/sync/", rest.SyncView.as_view(), name="session-sync"),
    path("search/", rest.SearchView.as_view(), name="search"),
    path(
        "sessions/<str:pk>/export/", export_views.SessionExportView.as_view(), name="session-export"
    ),
    path("export/", export_views.UserExportView.as_view(), name="export"),
]

# [\s\S] and \Z: an id with a newline reaches the view's validation (a 400)
# instead of falling through to a 404.
_compat_routes = [
    path("", compat.HealthView.as_view(), name="health"),
    path("sessions", compat.SessionListView.as_view(), name="sessions"),
    re_path(
        r"^sessions/(?P<session_id>[\s\S]+)/memory\Z", compat.MemoryView.as_view(), name="memory"
    ),
    re_path(
        r"^sessions/(?P<session_id>[\s\S]+)/retrieval\Z",
        compat.RetrievalView.as_view(),
        name="retrieval",
    ),
]

compat_urlpatterns = [
    *_compat_routes,
    re_path(r"^k/(?P<api_key>[^/]+)/", include((_compat_routes, "keyed"))),
    re_path(r"^[\s\S]*\Z", compat.not_found),
]
