#!/usr/bin/env python3
"""Set up and run motorhead-django for development: the README's two commands.

    python3.11 dev.py example           # the example project, synced with an embedded Motorhead
                                        # (and an Agents SDK and a LangGraph conversation, no LLM)
    python3.11 dev.py example --worker  # the same, with a Celery worker and beat on a broker
    python3.11 dev.py test              # the whole suite, on SQLite and then on PostgreSQL

Both create ``.venv`` and install the package with its development extras when
needed, so a fresh clone with only Python 3.11 needs nothing else. Extra
arguments after ``test`` go to pytest (``python3.11 dev.py test -k client``).

Environment:
    TEST_DATABASES   legs to run, comma-separated (default "sqlite,postgres")
    TEST_POSTGRES_URL  the PostgreSQL leg's database
                     (default postgres://postgres@127.0.0.1:5432/test)
    CI               "true": a missing service fails the run instead of skipping
    PORT             the example project's port (default 8000)
    MOTORHEAD_URL    use this Motorhead server instead of the embedded one
    CELERY_BROKER_URL  the example's broker; --worker defaults it to
                     redis://127.0.0.1:6379/0 (without it and --worker, tasks run eagerly)
    DEBUG            the example's DEBUG (default "true")
The example project reads more variables (DATABASE_URL, SECRET_KEY, ...): see README.md.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import venv
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".motorhead-django-installed"
INSTALL_INPUTS = (ROOT / "setup.cfg", ROOT / "pyproject.toml")
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"


def say(text: str) -> None:
    print(f"[dev.py] {text}", flush=True)


def run(*args: str | Path, env: dict[str, str] | None = None) -> int:
    return subprocess.call([str(arg) for arg in args], cwd=ROOT, env=env)


def ensure_installed() -> None:
    """Create .venv and install the package (editable, with dev extras) when stale."""
    if sys.version_info < (3, 11):  # noqa: UP036  (dev.py may run under any python3)
        sys.exit("motorhead-django needs Python 3.11 or newer.")
    if not PYTHON.exists():
        say(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    newest_input = max(path.stat().st_mtime for path in INSTALL_INPUTS)
    if STAMP.exists() and STAMP.stat().st_mtime >= newest_input:
        return
    say("installing motorhead-django and its development dependencies into .venv")
    pip = [PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "--quiet"]
    if run(*pip, "-e", ".[dev]") != 0:
        sys.exit("pip install failed (see above).")
    STAMP.touch()


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def start_test_server() -> tuple[subprocess.Popen[str], str]:
    """Start the embedded Motorhead-compatible server on a free port."""
    process = subprocess.Popen(
        [str(PYTHON), "-m", "motorhead_django.testing", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    url = line.rsplit(" ", 1)[-1]
    if process.poll() is not None or not url.startswith("http"):
        sys.exit(f"the embedded Motorhead test server did not start: {line!r}")
    return process, url


def celery_commands(env: dict[str, str]) -> list[str]:
    """The worker and beat command lines to run beside the example, as a shell would read them."""
    prefix = " ".join(
        f"{name}={env[name]}"
        for name in (
            "CELERY_BROKER_URL",
            "MOTORHEAD_URL",
            "MOTORHEAD_LLM_URL",
            "DATABASE_URL",
        )
        if env.get(name)
    )
    return [f"{prefix} .venv/bin/celery -A example_project {role} -l info" for role in ROLES]


ROLES = ("worker", "beat")


def start_celery(env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    """Start the worker and beat of celery_commands(env) as child processes."""
    return [
        subprocess.Popen(
            [str(VENV / "bin" / "celery"), "-A", "example_project", role, "-l", "info"],
            cwd=ROOT,
            env=env,
        )
        for role in ROLES
    ]


def example(argv: list[str]) -> int:
    unknown = [arg for arg in argv if arg != "--worker"]
    if unknown:
        sys.exit(f"dev.py example: unknown argument(s) {' '.join(unknown)} (only --worker)")
    with_worker = "--worker" in argv
    ensure_installed()
    env = dict(os.environ)
    env.setdefault("DEBUG", "true")
    if with_worker:
        env.setdefault("CELERY_BROKER_URL", DEFAULT_BROKER_URL)
        if not reachable(env["CELERY_BROKER_URL"], 6379):
            sys.exit(
                f"--worker needs a broker: nothing answers at {env['CELERY_BROKER_URL']} "
                "(start Redis, or set CELERY_BROKER_URL)."
            )
    manage = (PYTHON, "manage.py")
    if run(*manage, "migrate", "--noinput", env=env) != 0:
        return 1
    if run(*manage, "example_demo_user", env=env) != 0:
        return 1
    children: list[subprocess.Popen[bytes] | subprocess.Popen[str]] = []
    if not env.get("MOTORHEAD_URL"):
        server, env["MOTORHEAD_URL"] = start_test_server()
        children.append(server)
        say(f"embedded Motorhead test server (upstream for sync): {env['MOTORHEAD_URL']}")
        # Its OpenAI-compatible /v1 routes stand in for the LLM of the built-in summariser.
        env.setdefault("MOTORHEAD_LLM_URL", env["MOTORHEAD_URL"] + "/v1")
        say(f"built-in summariser and embeddings: {env['MOTORHEAD_LLM_URL']} (test LLM)")
    # After the upstream is up: the conversations are pushed to it like any other.
    say("agent conversations for the admin (scripted, no LLM; kept if already there):")
    if run(*manage, "example_agent_conversations", env=env) != 0:
        stop(children)
        return 1
    commands = celery_commands(env)
    if with_worker:
        say("starting the Celery worker and beat:")
        for command in commands:
            say(f"  {command}")
        children += start_celery(env)
    elif env.get("CELERY_BROKER_URL"):
        say("run the Celery worker and beat beside it, each in a terminal of its own:")
        for command in commands:
            say(f"  {command}")
    else:
        say("Celery tasks run eagerly in the web process (no CELERY_BROKER_URL). For a worker and")
        say("beat: `python3.11 dev.py example --worker`, or set CELERY_BROKER_URL (e.g.")
        say(f"{DEFAULT_BROKER_URL}) and run the two commands this then prints.")
    port = env.get("PORT", "8000")
    say(f"example project: http://127.0.0.1:{port}/admin/  (Ctrl-C stops it)")
    # --noreload: one process, so the upstream above stays the upstream.
    web = subprocess.Popen(
        [str(PYTHON), "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return web.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop([*children, web])


def stop(children: list[subprocess.Popen[bytes] | subprocess.Popen[str]]) -> None:
    """Stop what the example started, the last started first."""
    for child in reversed(children):
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()


def _interrupt(signum: int, frame: object) -> None:
    # SIGTERM stops the example like Ctrl-C does, children included.
    raise KeyboardInterrupt


def test(pytest_args: list[str]) -> int:
    ensure_installed()
    legs = [leg.strip() for leg in os.environ.get("TEST_DATABASES", "sqlite,postgres").split(",")]
    in_ci = os.environ.get("CI", "").lower() == "true"
    failed: list[str] = []
    for leg in legs:
        env = dict(os.environ)
        if leg == "sqlite":
            env.pop("DATABASE_URL", None)
        elif leg == "postgres":
            env["DATABASE_URL"] = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
            if not reachable(env["DATABASE_URL"], 5432):
                message = f"PostgreSQL is not reachable at {env['DATABASE_URL']}"
                if in_ci:
                    say(f"{message}: failing (CI=true)")
                    failed.append(leg)
                else:
                    say(f"{message}: skipping the PostgreSQL leg")
                continue
        else:
            sys.exit(f"unknown test leg {leg!r} in TEST_DATABASES (use sqlite, postgres)")
        say(f"test leg: {leg}")
        if run(PYTHON, "-m", "pytest", *pytest_args, env=env) != 0:
            failed.append(leg)
    if failed:
        say(f"FAILED legs: {', '.join(failed)}")
        return 1
    say("all test legs passed")
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("example", "test"):
        print(__doc__)
        return 2
    return example(argv[1:]) if argv[0] == "example" else test(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
