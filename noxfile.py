"""The version matrix: ``nox`` runs the suite on Python 3.11-3.13, Django 4.2 and 5.2, SQLite and
PostgreSQL.

    .venv/bin/nox -l                               # the sessions
    .venv/bin/nox                                  # every session
    .venv/bin/nox -s "tests(python='3.13', django='5.2', database='sqlite')"
    .venv/bin/nox -s lint

PostgreSQL comes from TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import os

import nox

nox.options.reuse_existing_virtualenvs = True
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")


# Django 4.2 supports Python up to 3.12; 5.2 up to 3.13.
PYTHON_DJANGO = [
    (python, django)
    for python in ("3.11", "3.12", "3.13")
    for django in ("4.2", "5.2")
    if (python, django) != ("3.13", "4.2")
]


@nox.session
@nox.parametrize("database", ["sqlite", "postgresql"])
@nox.parametrize(("python", "django"), PYTHON_DJANGO)
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
