"""``manage.py motorhead_erase``: erase a user or a session everywhere, and print the receipt."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from motorhead_django import governance
from motorhead_django.exceptions import MotorheadLegalHoldError

from ._subject import add_subject_arguments, subject


class Command(BaseCommand):
    help = (
        "Erase every session of a user (and their API keys), or one session: messages, "
        "summaries and their timeline, here and on the Motorhead server, which is then read "
        "back. Prints the erasure receipt (JSON), which is kept. Held sessions are refused."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_subject_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        user, session = subject(options)
        try:
            if user is not None:
                erasure = governance.erase_user(user)
            else:
                assert session is not None
                erasure = governance.erase_session(session)
        except MotorheadLegalHoldError as exc:
            raise CommandError(f"Refused: {exc}") from None
        self.stdout.write(json.dumps(erasure.receipt.as_dict(), indent=2, sort_keys=True))
        if erasure.receipt.server_confirmed is False:
            self.stderr.write(f"Not confirmed by the server: {erasure.receipt.server_detail}")
