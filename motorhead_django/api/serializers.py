"""Input validation for both surfaces. Limits that depend on settings (roles,
lengths, batch size) are enforced once, by the memory core."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from motorhead_django import memory, policy
from motorhead_django.exceptions import MotorheadValidationError
from motorhead_django.models import SyncState

# For the schema: what validate_text_param and memory.validate_session_id accept.
NO_CONTROL_CHARACTERS = "^[^\\u0000-\\u001f\\u007f]*$"


def validate_text_param(name: str, value: str, max_length: int = 255) -> str:
    """A query parameter a database can compare with: bounded, no control characters."""
    if len(value) > max_length or any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise serializers.ValidationError(
            {name: [f"At most {max_length} characters, no control characters."]}
        )
    return value


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField would turn ``5`` into ``"5"``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class CoreTextField(StrictCharField):
    """A string the memory core accepts (``core_check`` raises MotorheadValidationError):
    its message becomes this field's error. DRF's CharField already refuses NUL and
    lone surrogates."""

    core_check: Any = staticmethod(memory.validate_namespace)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        try:
            type(self).core_check(value)
        except MotorheadValidationError as exc:
            raise serializers.ValidationError(list(exc.errors.values())) from None
        return value


# "+": with allow_blank, drf-spectacular adds a maxLength 0 alternative for "".
@extend_schema_field({"type": "string", "pattern": "^[^\\u0000]+$"})
class TextField(StrictCharField):
    """Message text or a context: Unicode scalar values, no NUL (DRF refuses the rest;
    the memory core checks lengths)."""


@extend_schema_field(
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": memory.ROLE_PATTERN}
)
class RoleField(StrictCharField):
    """A role: :data:`motorhead_django.memory.ROLE_PATTERN`, and ``ALLOWED_ROLES``; the
    memory core checks both, so its errors name the message (``messages[0].role``)."""


class RejectUnknownFields(serializers.Serializer):
    """For the REST write bodies: a key the serializer does not write is a 400 naming it,
    never silently dropped (a read-only ``sync_state`` included)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            writable = sorted(name for name, f in self.fields.items() if not f.read_only)
            errors = {}
            for name in data:
                if name in writable:
                    continue
                field = self.fields.get(name)
                errors[name] = [
                    "This field is read-only."
                    if field is not None
                    else f"Unknown field; this body takes {', '.join(writable)}."
                ]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


@extend_schema_field(
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": NO_CONTROL_CHARACTERS}
)
class SessionIdField(CoreTextField):
    """A Motorhead session id (:func:`motorhead_django.memory.validate_session_id`)."""

    core_check = staticmethod(memory.validate_session_id)


# "+" (not "*"): allow_blank adds the maxLength 0 alternative for "", as for TextField.
@extend_schema_field(
    {"type": "string", "maxLength": 255, "pattern": "^[^\\u0000-\\u001f\\u007f]+$"}
)
class NamespaceField(CoreTextField):
    """A namespace (:func:`motorhead_django.memory.validate_namespace`)."""


class MotorheadMessageSerializer(serializers.Serializer):
    """A message in Motorhead's body: like the server, it ignores keys it does not know."""

    role = RoleField(min_length=1, max_length=255)
    content = TextField(allow_blank=True)


class MessageSerializer(RejectUnknownFields, MotorheadMessageSerializer):
    """A message in a REST body: unknown keys are refused."""


class MemoryWriteSerializer(serializers.Serializer):
    """``POST /sessions/{id}/memory``: Motorhead's body. Unknown fields are ignored, as
    the server's serde ignores them (real clients may send extras)."""

    messages = serializers.ListField(
        child=MotorheadMessageSerializer(), allow_empty=False, min_length=1
    )
    # A field: DRF's metaclass pops it, so Serializer.context is not shadowed.
    context = TextField(  # type: ignore[assignment]
        required=False, allow_null=True, allow_blank=True
    )


class RetrievalSerializer(serializers.Serializer):
    """``{"text"}`` of a retrieval; on the compatible route, other keys are ignored."""

    text = TextField(min_length=1, max_length=10_000)


class RestRetrievalSerializer(RejectUnknownFields, RetrievalSerializer):
    """The REST retrieval body: unknown keys are refused."""


# -- REST resources ------------------------------------------------------------------


@extend_schema_field({"type": "object", "additionalProperties": True})
class ItemField(serializers.JSONField):
    """``ChatMessage.item``, read-only: the message exactly as an agent framework gave it
    (an Agents SDK item, a serialized LangChain message), null for a plain message.

    With ``REDACT_LOCAL`` the memory core stores it redacted, as it does ``content``.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("read_only", True)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault(
            "help_text",
            "The message exactly as an agent framework gave it (an Agents SDK item, a "
            "serialized LangChain message); null for a plain message. content is its "
            "readable text.",
        )
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> Any:
        return None if value is None else super().to_representation(value)


class ChatMessageSerializer(serializers.Serializer):
    """A stored message, read-only: messages are appended, never edited."""

    sequence = serializers.IntegerField(read_only=True)
    role = serializers.CharField(read_only=True)
    content = serializers.CharField(read_only=True)
    item = ItemField()
    created_at = serializers.DateTimeField(read_only=True)
    origin = serializers.CharField(read_only=True)
    sync_state = serializers.CharField(read_only=True)


class MessagesBatchSerializer(RejectUnknownFields):
    """For the schema: the many-messages form of :class:`MessagesAppendSerializer`."""

    messages = serializers.ListField(child=MessageSerializer(), allow_empty=False, min_length=1)


class MessagesAppendSerializer(RejectUnknownFields):
    """One message (``{"role", "content"}``) or many (``{"messages": [...]}``), oldest first."""

    role = RoleField(min_length=1, max_length=255, required=False)
    content = TextField(allow_blank=True, required=False)
    messages = serializers.ListField(
        child=MessageSerializer(), allow_empty=False, min_length=1, required=False
    )

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        single = "role" in data or "content" in data
        if single and "messages" in data:
            raise serializers.ValidationError("Send either role and content, or messages.")
        if single:
            missing = {"role", "content"} - set(data)
            if missing:
                raise serializers.ValidationError({f: ["This field is required."] for f in missing})
            return {"messages": [{"role": data["role"], "content": data["content"]}]}
        if "messages" not in data:
            raise serializers.ValidationError({"messages": ["This field is required."]})
        return {"messages": data["messages"]}


class MetadataField(serializers.JSONField):
    """A JSON object both databases read back unchanged (memory.validate_metadata)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and memory.json_too_deep(data):
            # A form field's JSON text, parsed by DRF's json.loads: bounded first.
            raise serializers.ValidationError(f"Nested deeper than {memory.MAX_JSON_DEPTH} levels.")
        value = super().to_internal_value(data)
        try:
            return memory.validate_metadata(value)
        except MotorheadValidationError as exc:
            raise serializers.ValidationError(
                [f"{where}: {message}" for where, message in exc.errors.items()]
            ) from None


class ErrorDetailField(serializers.CharField):
    """``last_error`` as stored (already redacted) for users who may change sessions; for
    everyone else only that there was one, since the text may name the upstream host."""

    hidden = "The last sync step failed (details need the change permission)."

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, value: Any) -> str:
        if not value:
            return ""
        user = getattr(self.context.get("request"), "user", None)
        if policy.holds(user, policy.CHANGE):  # change on every session (motorhead_django.policy)
            return str(value)
        return self.hidden


class DriftField(serializers.CharField):
    """``drift`` for users who may change this session (its owner, or the change
    permission); a view-only user learns only that there is drift, as with ``last_error``."""

    hidden = "The server's copy differs (details need the change permission)."

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, session: Any) -> str:
        if not session.drift:
            return ""
        user = getattr(self.context.get("request"), "user", None)
        if policy.allows(user, policy.CHANGE, session):
            return str(session.drift)
        return self.hidden


class ChatSessionSerializer(RejectUnknownFields):
    """A session with its activity and sync status. Only ``metadata`` and ``context`` change
    after creation; the id and namespace name it on the server."""

    id = serializers.IntegerField(read_only=True)
    session_id = SessionIdField(max_length=255)
    remote_id = serializers.CharField(
        read_only=True, help_text="The id the Motorhead server knows the session by."
    )
    namespace = NamespaceField(max_length=255, required=False, allow_blank=True)
    owner = serializers.IntegerField(source="owner_id", read_only=True, allow_null=True)
    metadata = MetadataField(required=False)
    # A field: DRF's metaclass pops it, so Serializer.context is not shadowed.
    context = TextField(  # type: ignore[assignment]
        required=False, allow_null=True, allow_blank=True
    )
    tokens = serializers.IntegerField(read_only=True)
    message_count = serializers.IntegerField(read_only=True)
    last_activity = serializers.DateTimeField(read_only=True, allow_null=True)
    sync_state = serializers.CharField(read_only=True)
    last_error = ErrorDetailField()
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
    legal_hold = serializers.BooleanField(
        read_only=True, help_text="Set and lifted with PATCH, by holders of set_legal_hold."
    )


class SessionUpdateSerializer(RejectUnknownFields):
    """``PATCH``/``PUT`` of a session: ``metadata``, ``context``, and ``legal_hold`` (which
    needs the ``motorhead_django.set_legal_hold`` permission)."""

    metadata = MetadataField(required=False)
    # A field: DRF's metaclass pops it, so Serializer.context is not shadowed.
    context = TextField(  # type: ignore[assignment]
        required=False, allow_null=True, allow_blank=True
    )
    legal_hold = serializers.BooleanField(required=False)


class SyncStatusSerializer(serializers.Serializer):
    """Where a session stands; ``drifted`` and ``in_doubt`` are states of their own.

    ``drift`` says what the last pull or verify found different on the server
    (empty unless drifted). ``in_doubt``: an ambiguous write could not be
    settled from the server's answer; its copy is rebuilt before more is sent.
    """

    sync_state = serializers.ChoiceField(choices=SyncState.choices)
    drift = DriftField()
    last_error = ErrorDetailField()
    sync_attempts = serializers.IntegerField()
    context_pending = serializers.BooleanField()
    pending_messages = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_pushed_at = serializers.DateTimeField(allow_null=True)
    last_pulled_at = serializers.DateTimeField(allow_null=True)


# -- response shapes (for the OpenAPI schema) -----------------------------------------


class HealthSerializer(serializers.Serializer):
    now = serializers.IntegerField(help_text="Milliseconds since the Unix epoch.")


class SyncTriggerSerializer(RejectUnknownFields):
    action = serializers.ChoiceField(choices=("push", "pull"), default="push")


class StatusSerializer(serializers.Serializer):
    status = serializers.CharField()


class MotorheadMemorySerializer(serializers.Serializer):
    """Motorhead's memory: the newest ``WINDOW_SIZE + 1`` messages, newest first."""

    messages = MessageSerializer(many=True)
    # A field: DRF's metaclass pops it, so Serializer.context is not shadowed.
    context = serializers.CharField(allow_null=True)  # type: ignore[assignment]
    tokens = serializers.IntegerField()


class RetrievalResultSerializer(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField()
    dist = serializers.FloatField(help_text="0 is the nearest.")


class SearchResultSerializer(RetrievalResultSerializer):
    """A retrieval result across sessions: which session and message it is."""

    session = serializers.IntegerField(help_text="The session's primary key.")
    session_id = serializers.CharField()
    sequence = serializers.IntegerField()
