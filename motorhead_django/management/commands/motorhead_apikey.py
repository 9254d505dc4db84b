"""Issue (or revoke) an API key for the Motorhead-compatible routes.

    manage.py motorhead_apikey --owner alice --name "support bot" [--namespace team]
    manage.py motorhead_apikey --revoke 1a2b3c4d

The new key is printed on the last line of the output, alone, for scripts
(``KEY=$(manage.py motorhead_apikey --owner alice | tail -n 1)``). It is not
stored anywhere: only its hash is.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import memory
from ...exceptions import MotorheadValidationError
from ...models import ApiKey


class Command(BaseCommand):
    help = "Issue an API key for the Motorhead-compatible routes (printed on the last line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--owner", help="Username of the user the key acts for.")
        parser.add_argument("--name", default="", help="What the key is for.")
        parser.add_argument(
            "--namespace", default=None, help="Only this namespace is reachable (default: all)."
        )
        parser.add_argument("--revoke", metavar="PREFIX", help="Revoke the key with this prefix.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["revoke"]:
            prefix = options["revoke"].removeprefix(ApiKey.PREFIX)[:8]
            _check("--revoke", prefix)
            key = ApiKey.objects.filter(prefix=prefix).first()
            if key is None:
                raise CommandError(f"No API key with prefix {prefix!r}.")
            key.revoke()
            self.stdout.write(f"Revoked {key}.")
            return
        if not options["owner"]:
            raise CommandError("--owner is required to issue a key.")
        _check("--owner", options["owner"])
        User = get_user_model()
        try:
            owner = User.objects.get(**{User.USERNAME_FIELD: options["owner"]})
        except User.DoesNotExist:
            raise CommandError(f"No user {options['owner']!r}.") from None
        if options["namespace"] is not None:
            _check("--namespace", options["namespace"], namespace=True)
        _check("--name", options["name"], max_length=100)
        name = options["name"] or f"{owner} (command line)"
        key, raw = ApiKey.issue(owner, name, namespace=options["namespace"])
        scope = f"namespace {key.namespace!r}" if key.namespace is not None else "all namespaces"
        self.stdout.write(f"Issued {key} for {owner}, {scope}. It is shown once:")
        self.stdout.write(raw)


def _check(option: str, value: str, *, namespace: bool = False, max_length: int = 255) -> None:
    """Refuse what the database could not store or compare (CommandError, not a DataError)."""
    try:
        if namespace:
            memory.validate_namespace(value)
        else:
            memory.validate_text(value, field=option, max_length=max_length, control=False)
    except MotorheadValidationError as exc:
        raise CommandError(f"{option}: {' '.join(exc.errors.values())}") from None
