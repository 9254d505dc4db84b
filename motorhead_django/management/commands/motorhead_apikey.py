"""Issue (or revoke) an API key for the Motorhead-compatible routes.

    manage.py motorhead_apikey --owner alice --name "support bot" [--namespace team]
    manage.py motorhead_apikey --revoke 1a2b3c4d
    manage.py motorhead_apikey --list [--all]

The new key is printed on the last line of the output, alone, for scripts
(``KEY=$(manage.py motorhead_apikey --owner alice | tail -n 1)``). It is not
stored anywhere: only its hash is.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from motorhead_django import memory
from motorhead_django.exceptions import MotorheadValidationError
from motorhead_django.models import ApiKey


class Command(BaseCommand):
    help = "Issue an API key for the Motorhead-compatible routes (printed on the last line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--owner", help="Username of the user the key acts for.")
        parser.add_argument("--name", default="", help="What the key is for.")
        parser.add_argument(
            "--namespace", default=None, help="Only this namespace is reachable (default: all)."
        )
        parser.add_argument("--revoke", metavar="PREFIX", help="Revoke the key with this prefix.")
        parser.add_argument(
            "--list",
            action="store_true",
            help="List the active keys: prefix, owner, namespace, name, created, last used.",
        )
        parser.add_argument("--all", action="store_true", help="With --list: revoked keys too.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            if options["revoke"] or options["owner"]:
                raise CommandError("--list takes no --revoke or --owner.")
            self._list(everything=options["all"])
            return
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

    def _list(self, *, everything: bool) -> None:
        keys = ApiKey.objects.select_related("owner").order_by("-created_at", "-pk")
        if not everything:
            keys = keys.active()
        rows = [
            (
                f"{ApiKey.PREFIX}{key.prefix}",
                str(key.owner),
                "(all)" if key.namespace is None else repr(key.namespace),
                key.name,
                _when(key.created_at),
                _when(key.last_used_at) or "never",
                _when(key.revoked_at) if key.revoked_at else "active",
            )
            for key in keys
        ]
        if not rows:
            self.stdout.write("No API keys." if everything else "No active API keys.")
            return
        header = ("PREFIX", "OWNER", "NAMESPACE", "NAME", "CREATED", "LAST USED", "STATUS")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            self.stdout.write("  ".join(cells).rstrip())


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else ""


def _check(option: str, value: str, *, namespace: bool = False, max_length: int = 255) -> None:
    """Refuse what the database could not store or compare (CommandError, not a DataError)."""
    try:
        if namespace:
            memory.validate_namespace(value)
        else:
            memory.validate_text(value, field=option, max_length=max_length, control=False)
    except MotorheadValidationError as exc:
        raise CommandError(f"{option}: {' '.join(exc.errors.values())}") from None
