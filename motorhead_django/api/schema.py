"""OpenAPI (drf-spectacular) support: the API-key security scheme and a hook.

Importing this module registers the scheme; :mod:`motorhead_django.api.compat`
does. Add the hook to ``SPECTACULAR_SETTINGS["PREPROCESSING_HOOKS"]`` so the
``k/<key>/`` copies of the compatible routes are not listed twice.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "motorhead_django.api.authentication.ApiKeyAuthentication"
    name = "MotorheadApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "x-metal-api-key",
            "description": "An API key (manage.py motorhead_apikey). Clients that cannot send "
            "headers put it in the base URL instead: .../k/<key>/sessions/...",
        }


def exclude_keyed_routes(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """Drop the ``k/{api_key}/`` copies of the compatible routes from the schema."""
    return [endpoint for endpoint in endpoints if "{api_key}" not in endpoint[0]]
