"""What the sync commands share: choosing the sessions, progress, and the exit status.

``motorhead_push``, ``motorhead_pull``, ``motorhead_verify`` and ``motorhead_rehydrate``
are each a :class:`SessionsCommand` naming one verb of :mod:`._engine` (the only
place they reach the sync engine); ``motorhead_sync`` maps its old options onto them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db.models import Q

from motorhead_django import memory
from motorhead_django.conf import motorhead_settings
from motorhead_django.exceptions import MotorheadValidationError
from motorhead_django.models import ChatSession
from motorhead_django.progress import Progress

from . import _engine
from ._engine import Each, Outcome


class SessionsCommand(BaseCommand):
    """Run one engine verb over ``--session ID`` or the sessions the verb takes by default.

    Subclasses set :attr:`verb` and :meth:`default_sessions`, and may add options
    (:meth:`add_options`, checked in :meth:`check_options`) and their own
    :meth:`report`. Each session gets a ``[i/n] name: outcome`` line under the
    :class:`~motorhead_django.progress.Progress` rules; a :class:`CommandError`
    (exit status 1) says what is left undone.
    """

    verb: str  # the name of a function of _engine: "push", "pull", ...
    session_help = "Only this session"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--session",
            metavar="ID",
            help=f"{self.session_help}: its session id (every owner's session with that id) "
            "or its id on the server (u<owner id>:<id>).",
        )
        parser.add_argument(
            "--namespace",
            metavar="NS",
            default=None,
            help="Namespace of --session (default: MOTORHEAD['NAMESPACE']).",
        )
        self.add_options(parser)

    def add_options(self, parser: CommandParser) -> None:
        """The command's own options, beside --session and --namespace."""

    def check_options(self, options: dict[str, Any]) -> None:
        """Refuse options that mean nothing together, rather than ignore one of them."""

    def default_sessions(self, options: dict[str, Any]) -> list[int]:
        raise NotImplementedError

    def handle(self, *args: Any, **options: Any) -> None:
        if options["namespace"] is not None and options["session"] is None:
            raise CommandError("--namespace only goes with --session.")
        self.check_options(options)
        if not motorhead_settings.SYNC_ENABLED:
            raise CommandError(
                "Sync is not enabled: set MOTORHEAD['URL'] (and leave SYNC_ENABLED unset or True)."
            )
        if options["session"] is not None:
            keys = named_sessions(options["session"], options["namespace"])
        else:
            keys = self.default_sessions(options)
        self.started(keys)
        outcomes: list[Outcome] = []
        with Progress(self.stdout, len(keys), verbosity=options["verbosity"]) as bar:

            def each(outcome: Outcome) -> None:
                outcomes.append(outcome)
                line = f"[{len(outcomes)}/{len(keys)}] {_name(outcome.session_pk)}: {outcome.said}"
                bar.step(line, failed=outcome.failed)

            run: Callable[[list[int], Each], None] = getattr(_engine, self.verb)
            run(keys, each)
        self.report(outcomes)

    def started(self, keys: list[int]) -> None:
        """A line before the work starts (none by default)."""

    def report(self, outcomes: list[Outcome]) -> None:
        """The ``Done:`` line; a CommandError naming what failed (and what drifted)."""
        failed = sum(outcome.failed for outcome in outcomes)
        self.stdout.write(f"Done: {len(outcomes) - failed} session(s), {failed} failed.")
        drifted = [_name(outcome.session_pk) for outcome in outcomes if outcome.drift]
        problems = []
        if failed:
            problems.append(f"{failed} session(s) failed; see the errors above")
        if drifted:
            problems.append(f"{len(drifted)} session(s) drifted: {', '.join(drifted)}")
        if problems:
            raise CommandError("; ".join(problems) + ".")


def named_sessions(session: str, namespace: str | None) -> list[int]:
    """The sessions ``--session ID [--namespace NS]`` names; a CommandError for none."""
    if namespace is None:
        namespace = motorhead_settings.NAMESPACE
    if "\x00" in session:
        raise CommandError("--session: no NUL characters.")
    try:
        memory.validate_namespace(namespace)
    except MotorheadValidationError as exc:
        raise CommandError(f"--namespace {namespace!r}: {exc.errors['namespace']}") from None
    # Ids are per owner, so one id may name several users' sessions; the server id names one.
    query = ChatSession.objects.filter(Q(session_id=session) | Q(remote_id=session))
    keys = list(query.filter(namespace=namespace).order_by("pk").values_list("pk", flat=True))
    if not keys:
        raise CommandError(f"No session {session!r} in namespace {namespace!r}.")
    return keys


def _name(session_pk: int) -> str:
    session = ChatSession.objects.filter(pk=session_pk).first()
    return str(session) if session is not None else f"#{session_pk}"


def progress_on_stderr(command: BaseCommand, total: int, verbosity: int) -> Progress:
    """Progress for a command whose stdout is its result (an export): on stderr.

    Per-session lines at ``-v 2``. A fresh wrapper of the raw stream, so the
    lines are not styled as errors on a terminal.
    """
    stream = cast(TextIO, command.stderr._out)
    return Progress(OutputWrapper(stream), total, verbosity=verbosity, item_verbosity=2)
