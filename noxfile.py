"""The version matrix: ``nox`` runs the suite on Django 4.2 and 5.2, SQLite and PostgreSQL.

    .venv/bin/nox                                  # every session
    .venv/bin/nox -s "tests(django='4.2', database='sqlite')"
    .venv/bin/nox -s lint

PostgreSQL comes from TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import os

import nox

nox.options.reuse_existing_virtualenvs = True
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")


@nox.session(python="3.11")
@nox.parametrize("database", ["sqlite", "postgresql"])
@nox.parametrize("django", ["4.2", "5.2"])
def tests(session: nox.Session, django: str, database: str) -> None:
    session.install("-e", ".[dev]", f"django~={django}.0")
    env = {"DATABASE_URL": POSTGRES_URL} if database == "postgresql" else {}
    session.run("python", "-m", "pytest", *session.posargs, env=env)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
