"""``manage.py motorhead_claim USERNAME``: give sessions without an owner to a user."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from motorhead_django import memory
from motorhead_django.models import ChatSession


class Command(BaseCommand):
    help = (
        "Give sessions that have no owner (imported, or created without a key) to a user, "
        "so that user's API keys and REST requests reach them. They keep the id the "
        "Motorhead server knows them by. Name the sessions with --session, or take every "
        "ownerless one (of the --namespace given) with --all."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="The user who becomes the owner.")
        parser.add_argument(
            "--session", action="append", metavar="ID", help="A session id (repeat for several)."
        )
        parser.add_argument(
            "--namespace",
            action="append",
            metavar="NS",
            help="Only sessions in this namespace (repeat for several; '' for none).",
        )
        parser.add_argument(
            "--all", action="store_true", help="Every ownerless session (of those namespaces)."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Only say how many would be claimed."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        username = options["username"]
        if "\x00" in username:
            raise CommandError("The username cannot hold a NUL character.")
        owner = users._default_manager.filter(**{users.USERNAME_FIELD: username}).first()
        if owner is None:
            raise CommandError(f"No user {username!r}.")
        if not options["session"] and not options["all"]:
            raise CommandError("Name the sessions with --session ID, or pass --all.")
        if options["session"] and options["all"]:
            raise CommandError("--session and --all exclude each other.")
        for value in (options["session"] or []) + (options["namespace"] or []):
            if "\x00" in value:
                raise CommandError(f"{value!r}: no NUL characters.")
        sessions = ChatSession.objects.filter(owner__isnull=True)
        if options["namespace"] is not None:
            sessions = sessions.filter(namespace__in=options["namespace"])
        if options["session"]:
            sessions = sessions.filter(session_id__in=options["session"])
            found = set(sessions.values_list("session_id", flat=True))
            for missing in dict.fromkeys(options["session"]):
                if missing not in found:
                    self.stderr.write(f"No ownerless session {missing!r}.")
        sessions = sessions.order_by("pk")
        if options["dry_run"]:
            self.stdout.write(f"Would claim {sessions.count()} session(s) for {username}.")
            return
        claimed, conflicts = memory.claim_sessions(sessions.iterator(), owner)
        for session in conflicts:
            self.stderr.write(
                f"Skipped {session}: {username} already has a session with this id there."
            )
        self.stdout.write(f"Claimed {claimed} session(s) for {username}.")
        if conflicts:
            raise CommandError(f"{len(conflicts)} session(s) not claimed; see above.")
