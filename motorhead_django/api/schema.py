"""OpenAPI (drf-spectacular) support: the API-key security scheme, the error answers
of every operation, and a hook.

Importing this module registers the scheme; :mod:`motorhead_django.api.compat`
does. The views set :class:`MotorheadAutoSchema` themselves, so their error statuses
are listed whatever the project's ``DEFAULT_SCHEMA_CLASS``. Add the hook to
``SPECTACULAR_SETTINGS["PREPROCESSING_HOOKS"]`` so the ``k/<key>/`` copies of the
compatible routes are not listed twice.
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes


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


_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain_description(text: str) -> str:
    """A docstring as Markdown: reST roles and double backticks become code spans."""
    text = _ROLE.sub(r"`\1`", text)
    text = _LITERAL.sub(r"`\1`", text)
    return re.sub(r"::$", ":", text, flags=re.M)


class PlainDescriptions:
    """Views: the browsable API and OPTIONS show the docstring without reST markup."""

    def get_view_description(self, html: bool = False) -> str:
        from rest_framework.utils.formatting import dedent, markup_description

        text = plain_description(dedent(self.__class__.__doc__ or ""))
        return markup_description(text) if html else text


class MotorheadAutoSchema(AutoSchema):
    """Lists the error answers next to each operation's own, so a client (and a schema
    check) knows every status it may get: who may call, and what bad input is."""

    def get_description(self) -> str:  # type: ignore[override]
        return plain_description(super().get_description())

    def _map_serializer(
        self, serializer: Any, direction: Any, bypass_extensions: bool = False
    ) -> Any:
        result = super()._map_serializer(serializer, direction, bypass_extensions)
        if isinstance(result, dict) and isinstance(result.get("description"), str):
            result["description"] = plain_description(result["description"])
        return result

    # What a path parameter that names nothing is: a REST id that is not one of the
    # caller's sessions is a 404.
    bad_path_status = 404

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        where = {parameter["in"] for parameter in operation.get("parameters", [])}
        names = {parameter["name"] for parameter in operation.get("parameters", [])}
        codes = {401, 429}  # every route is throttled (api/throttling.py)
        if "requestBody" in operation:
            codes |= {400, 413, 415}
        if "query" in where:
            codes.add(400)
        if self.method == "GET" and self._get_paginator() is not None:
            codes.add(404)  # DRF's paginators: a page past the end, a bad cursor
        if "path" in where:
            codes.add(self.bad_path_status)
        codes |= self.forbidden(names)
        for code in sorted(codes):
            response = self._get_response_for_code(OpenApiTypes.OBJECT, str(code))
            response["description"] = _ERRORS[code]
            operation["responses"].setdefault(str(code), response)
        return operation

    def forbidden(self, parameters: set[str]) -> set[int]:
        # Session authentication checks CSRF on writes.
        return {403} if self.method in ("POST", "PUT", "PATCH", "DELETE") else set()


class CompatAutoSchema(MotorheadAutoSchema):
    # Motorhead's session ids are any text: a malformed one is bad input, an unknown one
    # simply has no messages.
    bad_path_status = 400

    def forbidden(self, parameters: set[str]) -> set[int]:
        # A key limited to a namespace may not name another.
        return {403} if "namespace" in parameters else set()


_ERRORS = {
    400: "Bad input, with field-level messages.",
    401: "No credentials, or invalid ones.",
    403: "Not allowed (another namespace than the API key's, or a CSRF failure).",
    404: "Not found, or not one of the caller's.",
    413: "The body is larger than MOTORHEAD['MAX_REQUEST_BYTES'] (the message names the limit).",
    415: "The body's media type is not accepted.",
    429: "Throttled: too many requests, or too many failed authentications (see Retry-After).",
}
