from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from motorhead_django.health import health_urlpatterns
from motorhead_django.metrics import metrics_urlpatterns
from motorhead_django.urls import compat_urlpatterns, rest_urlpatterns

# The documentation pages are HTML for browsers: drf-spectacular renders OPTIONS
# through their template and answers a 500, so only GET and HEAD are served.
DOC_PAGE_METHODS = ["get", "head"]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", http_method_names=DOC_PAGE_METHODS),
        name="swagger-ui",
    ),
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="schema", http_method_names=DOC_PAGE_METHODS),
        name="redoc",
    ),
    path("api/", include((rest_urlpatterns, "motorhead-rest"))),
    path("motorhead/", include((compat_urlpatterns, "motorhead-compat"))),
    path("health/", include(health_urlpatterns)),
    path("metrics", include(metrics_urlpatterns)),
]
