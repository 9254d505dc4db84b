"""System checks for the governance settings (docs/settings.md): E015 and E016."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Tags, register
from django.utils.module_loading import import_string

from .checks import _id, _user_settings

_POLICY_KEYS = {"days": 0, "messages": 1}  # the smallest whole number each accepts


def _whole(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@register(Tags.compatibility)
def check_retention(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings() or {}
    messages: list[CheckMessage] = []
    policies = user.get("RETENTION")
    if policies is not None and not isinstance(policies, dict):
        return [Error("MOTORHEAD['RETENTION'] must be a dict or None.", id=_id("E015"))]
    for namespace, policy in (policies or {}).items():
        where = f"MOTORHEAD['RETENTION'][{namespace!r}]"
        if not isinstance(namespace, str) or not isinstance(policy, dict) or not policy:
            messages.append(
                Error(
                    f"{where} must map a namespace to a policy dict.",
                    hint='For example {"support": {"days": 30}, "*": {"messages": 500}}.',
                    id=_id("E015"),
                )
            )
            continue
        for key, value in policy.items():
            if key not in _POLICY_KEYS:
                messages.append(
                    Error(f"{where} has an unknown key {key!r} (days, messages).", id=_id("E015"))
                )
            elif not _whole(value, _POLICY_KEYS[key]):
                messages.append(
                    Error(
                        f"{where}[{key!r}] must be a whole number >= {_POLICY_KEYS[key]}.",
                        id=_id("E015"),
                    )
                )
    if "RETENTION_BATCH" in user and not _whole(user["RETENTION_BATCH"], 1):
        messages.append(
            Error("MOTORHEAD['RETENTION_BATCH'] must be a whole number >= 1.", id=_id("E015"))
        )
    days = user.get("READ_AUDIT_DAYS")
    if days is not None and not _whole(days, 1):
        messages.append(
            Error(
                "MOTORHEAD['READ_AUDIT_DAYS'] must be a whole number >= 1 or None.", id=_id("E015")
            )
        )
    return messages


@register(Tags.compatibility)
def check_redact(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings() or {}
    messages: list[CheckMessage] = [
        Error(f"MOTORHEAD[{key!r}] must be True or False.", id=_id("E016"))
        for key in ("REDACT_LOCAL", "READ_AUDIT")
        if key in user and not isinstance(user[key], bool)
    ]
    path = user.get("REDACT")
    if path is None:
        return messages
    try:
        function = import_string(path) if isinstance(path, str) else None
    except ImportError as exc:
        return [*messages, Error(f"MOTORHEAD['REDACT'] cannot be imported: {exc}.", id=_id("E016"))]
    if not callable(function):
        messages.append(
            Error(
                "MOTORHEAD['REDACT'] must be the dotted path of a callable.",
                hint='For example "motorhead_django.redact.default" taking (role, content).',
                id=_id("E016"),
            )
        )
    return messages
