"""Input validation for both surfaces. Limits that depend on settings (roles,
lengths, batch size) are enforced once, by the memory core."""

from __future__ import annotations

import json
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

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


# "+": with allow_blank, drf-spectacular adds a maxLength 0 alternative for "".
@extend_schema_field({"type": "string", "pattern": "^[^\\u0000]+$"})
class TextField(StrictCharField):
    """Message text or a context: any string without a NUL character (DRF refuses those)."""


@extend_schema_field(
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": NO_CONTROL_CHARACTERS}
)
class SessionIdField(StrictCharField):
    """A Motorhead session id; the memory core validates it."""


class MessageSerializer(serializers.Serializer):
    role = StrictCharField(min_length=1, max_length=255)
    content = TextField(allow_blank=True)


class MemoryWriteSerializer(serializers.Serializer):
    """``POST /sessions/{id}/memory``: Motorhead's body. Unknown fields are ignored."""

    messages = serializers.ListField(child=MessageSerializer(), allow_empty=False, min_length=1)
    # A field: DRF's metaclass pops it, so Serializer.context is not shadowed.
    context = TextField(  # type: ignore[assignment]
        required=False, allow_null=True, allow_blank=True
    )


class RetrievalSerializer(serializers.Serializer):
    text = TextField(min_length=1, max_length=10_000)


# -- REST resources ------------------------------------------------------------------


class ChatMessageSerializer(serializers.Serializer):
    """A stored message, read-only: messages are appended, never edited."""

    sequence = serializers.IntegerField(read_only=True)
    role = serializers.CharField(read_only=True)
    content = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    origin = serializers.CharField(read_only=True)
    sync_state = serializers.CharField(read_only=True)


class MessagesBatchSerializer(serializers.Serializer):
    """For the schema: the many-messages form of :class:`MessagesAppendSerializer`."""

    messages = serializers.ListField(child=MessageSerializer(), allow_empty=False, min_length=1)


class MessagesAppendSerializer(serializers.Serializer):
    """One message (``{"role", "content"}``) or many (``{"messages": [...]}``), oldest first."""

    role = StrictCharField(min_length=1, max_length=255, required=False)
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


class ChatSessionSerializer(serializers.Serializer):
    """A session with its activity and sync status. Only ``metadata`` and ``context`` change
    after creation; the id and namespace name it on the server."""

    id = serializers.IntegerField(read_only=True)
    session_id = SessionIdField(max_length=255)
    namespace = StrictCharField(max_length=255, required=False, allow_blank=True)
    owner = serializers.IntegerField(source="owner_id", read_only=True, allow_null=True)
    metadata = serializers.JSONField(required=False)
    # A field: DRF's metaclass pops it, so Serializer.context is not shadowed.
    context = TextField(  # type: ignore[assignment]
        required=False, allow_null=True, allow_blank=True
    )
    tokens = serializers.IntegerField(read_only=True)
    message_count = serializers.IntegerField(read_only=True)
    last_activity = serializers.DateTimeField(read_only=True, allow_null=True)
    sync_state = serializers.CharField(read_only=True)
    last_error = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def validate_metadata(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise serializers.ValidationError("A JSON object.")
        if "\\u0000" in json.dumps(value):
            # PostgreSQL's jsonb cannot hold a NUL character.
            raise serializers.ValidationError("No NUL characters.")
        return value


class SessionUpdateSerializer(serializers.Serializer):
    metadata = serializers.JSONField(required=False)
    # A field: DRF's metaclass pops it, so Serializer.context is not shadowed.
    context = TextField(  # type: ignore[assignment]
        required=False, allow_null=True, allow_blank=True
    )

    validate_metadata = ChatSessionSerializer.validate_metadata


class SyncStatusSerializer(serializers.Serializer):
    sync_state = serializers.CharField()
    last_error = serializers.CharField()
    sync_attempts = serializers.IntegerField()
    context_pending = serializers.BooleanField()
    pending_messages = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_pushed_at = serializers.DateTimeField(allow_null=True)
    last_pulled_at = serializers.DateTimeField(allow_null=True)


# -- response shapes (for the OpenAPI schema) -----------------------------------------


class HealthSerializer(serializers.Serializer):
    now = serializers.IntegerField(help_text="Milliseconds since the Unix epoch.")


class SyncTriggerSerializer(serializers.Serializer):
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
