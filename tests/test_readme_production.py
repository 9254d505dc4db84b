"""The README's path to production, followed literally, with a real worker and beat.

In a temporary directory: ``django-admin startproject yourproject``, then the
README's code blocks (read from README.md, so the two cannot drift) applied to
the files they name, then the README's commands: ``manage.py migrate`` and
``check`` on a PostgreSQL database of the test's own, ``celery -A yourproject
worker`` and ``beat`` on Redis. Messages written through the documented core
API must reach the package's test server, all of them and in order, with no
``motorhead_sync``; after an outage of the server, beat alone brings it back in
step. The same for the example project's documented worker and beat commands.

The only additions to the README's settings are this machine's services (the
database, the broker, the test server's URL) and short intervals, appended
after the README's blocks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dj_database_url
import pytest

from motorhead_django.testing import MotorheadTestServer

from .conftest import IN_CI, REDIS_URL, require_service
from .docs_blocks import ROOT, Block, commands, section_blocks, split_env

# Each test starts a Celery worker and beat of its own.
pytestmark = [pytest.mark.workers, pytest.mark.slow]

README = ROOT / "README.md"
BIN = Path(sys.executable).parent
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
# Large enough that the server never compacts: it then holds every message to compare.
WINDOW = 64
SESSION = "user-42"  # the README's example session


# -- services -------------------------------------------------------------------------


@pytest.fixture
def redis_broker() -> str:
    require_service("Redis", REDIS_URL, 6379)
    from celery import Celery

    # Leftovers of an interrupted run on the default queue would run first.
    Celery(broker=REDIS_URL).control.purge()
    return REDIS_URL


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh PostgreSQL database of this test's own, dropped afterwards."""
    require_service("PostgreSQL", POSTGRES_URL, 5432)
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        message = "psycopg is not installed (pip install motorhead-django[postgres])"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    name = f"mh_readme_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(POSTGRES_URL)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def upstream() -> Iterator[MotorheadTestServer]:
    server = MotorheadTestServer(window_size=WINDOW).start()
    yield server
    server.stop()


# -- processes ------------------------------------------------------------------------


class Processes:
    """Long-running commands (worker, beat) in process groups of their own, logging to files."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], *, cwd: Path, env: dict[str, str]) -> Path:
        log = self.log_dir / f"{name}.log"
        process = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.running.append((name, process))
        return log

    def wait_for(self, log: Path, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in log.read_text(errors="replace"):
            for name, process in self.running:
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited ({process.returncode}):\n{self.tails()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in {log.name} after {timeout}s:\n{self.tails()}")
            time.sleep(0.1)

    def tails(self, lines: int = 40) -> str:
        parts = []
        for log in sorted(self.log_dir.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def stop(self) -> None:
        for _, process in reversed(self.running):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _, process in self.running:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


@pytest.fixture
def processes(tmp_path) -> Iterator[Processes]:
    logs = tmp_path / "logs"
    logs.mkdir()
    running = Processes(logs)
    yield running
    running.stop()


def executable(words: list[str]) -> list[str]:
    """A documented command with its program taken from this interpreter's environment."""
    program, *args = words
    if program == "python":
        return [sys.executable, *args]
    return [str(BIN / Path(program).name), *args]


def run(words: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    """Run a command to its end; returns its output (stdout, then stderr)."""
    result = subprocess.run(
        executable(words), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{' '.join(words)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def wait_until(
    condition: Callable[[], bool], what: str, processes: Processes, timeout: float = 90.0
) -> float:
    """Poll until ``condition``; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: still not after {timeout}s\n{processes.tails()}")
        time.sleep(0.2)
    return time.monotonic() - started


def local_states(database_url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT sync_state, count(*) FROM motorhead_django_chatmessage GROUP BY sync_state"
        ).fetchall()
    return dict(rows)


def remote_id_of(database_url: str, session_id: str) -> str:
    import psycopg

    with psycopg.connect(database_url) as conn:
        (row,) = conn.execute(
            "SELECT remote_id FROM motorhead_django_chatsession WHERE session_id = %s", [session_id]
        ).fetchall()
    return str(row[0])


# -- writing through the documented API -------------------------------------------------


def readme_write_block() -> Block:
    (block,) = [
        b
        for b in section_blocks(README, "Install in your project")
        if b.language == "python" and b.target is None
    ]
    assert "memory.append_messages" in block.text
    return block


def shell(code: str, *, cwd: Path, env: dict[str, str]) -> str:
    return run(["python", "manage.py", "shell", "-v", "0", "-c", code], cwd=cwd, env=env)


# The README's block runs in a view, where `request.user` is the signed-in user.
REQUEST = (
    "from types import SimpleNamespace\n"
    "from django.contrib.auth import get_user_model\n"
    "user, _ = get_user_model().objects.get_or_create(username='alice')\n"
    "request = SimpleNamespace(user=user)\n"
)


def append(first: int, last: int) -> str:
    # Alice's session, as the README's block made it (ids are per owner).
    return (
        REQUEST + "from motorhead_django import memory\n"
        f"session = memory.get_or_create_session({SESSION!r}, owner=user)\n"
        f"for n in range({first}, {last}):\n"
        "    memory.append_messages(session, [('Human', f'q{n}'), ('AI', f'a{n}')])\n"
    )


# The writer cannot reach the broker (a blip at write time): its pushes are never enqueued.
BROKER_AWAY = (
    "from celery import current_app\n"
    "current_app.conf.broker_write_url = 'redis://127.0.0.1:9/0'\n"
    "current_app.conf.broker_connection_timeout = 1\n"
)


def expected(first: int, last: int) -> list[dict[str, str]]:
    return [
        {"role": role, "content": f"{letter}{n}"}
        for n in range(first, last)
        for role, letter in (("Human", "q"), ("AI", "a"))
    ]


README_MESSAGES = [{"role": "Human", "content": "hi"}, {"role": "AI", "content": "hello"}]


def exercise(
    *,
    server: MotorheadTestServer,
    processes: Processes,
    project: Path,
    env: dict[str, str],
    database_url: str,
    first_write: str,
    worker_log: Path,
    beat_log: Path,
) -> dict[str, float]:
    """Write, wait for the server; stop it, write more, resume it, wait again."""
    timings: dict[str, float] = {}
    shell(first_write + append(0, 10), cwd=project, env=env)
    want = README_MESSAGES + expected(0, 10)

    # An owned session's id on the server is "u<owner pk>:<id>" (docs/security.md).
    remote_id = remote_id_of(database_url, SESSION)

    def mirrored() -> bool:
        return server.stored_messages(remote_id) == want

    timings["first"] = wait_until(mirrored, "the server holds every message", processes)
    assert local_states(database_url) == {"synced": len(want)}

    server.stop()  # an outage: connections refused
    shell(append(10, 16), cwd=project, env=env)
    want += expected(10, 16)
    time.sleep(3)  # pushes fail meanwhile, and back off
    assert local_states(database_url).get("pending", 0) > 0
    assert "Connection refused" in worker_log.read_text(errors="replace") or "retry" in (
        worker_log.read_text(errors="replace")
    )
    server.start()  # back on the same port, with what it held
    timings["after_outage"] = wait_until(mirrored, "beat brings the server back in step", processes)
    assert local_states(database_url) == {"synced": len(want)}
    assert (
        "Sending due task motorhead-django-sweep (motorhead_django.sweep)" in beat_log.read_text()
    )
    worker_text = worker_log.read_text(errors="replace")
    assert "motorhead_django.sweep" in worker_text and " succeeded in " in worker_text
    assert "SyncNotConfigured" not in worker_text

    # Writes whose push was never enqueued: only beat's sweep can bring them.
    output = shell(BROKER_AWAY + append(16, 19), cwd=project, env=env)
    assert "Could not enqueue the push of session" in output, output
    want += expected(16, 19)
    timings["sweep_only"] = wait_until(
        mirrored, "beat's sweep pushes what was never enqueued", processes
    )
    assert local_states(database_url) == {"synced": len(want)}
    return timings


# -- the README's new project -----------------------------------------------------------


def apply_readme(project: Path) -> list[Block]:
    """Append every file block of the README's install section to the file it names."""
    applied = []
    for block in section_blocks(README, "Install in your project"):
        if block.language != "python" or block.target is None:
            continue
        target = block.target if "/" in block.target else f"yourproject/{block.target}"
        path = project / target
        existing = path.read_text() if path.exists() else ""
        path.write_text(existing + "\n\n" + block.text)
        applied.append(block)
    return applied


def readme_commands() -> list[list[str]]:
    found = []
    for block in section_blocks(README, "Install in your project"):
        if block.language == "sh":
            found += commands(block)
    return found


def test_the_readme_from_startproject_to_a_worker_and_beat_in_step(
    tmp_path, redis_broker, database_url, upstream, processes
):
    project = tmp_path / "site"
    project.mkdir()
    run(
        ["django-admin", "startproject", "yourproject", str(project)],
        cwd=tmp_path,
        env=os.environ.copy(),
    )
    applied = apply_readme(project)
    assert sorted({b.target for b in applied if b.target}) == [
        "settings.py",
        "urls.py",
        "yourproject/__init__.py",
        "yourproject/celery.py",
    ]
    database = dj_database_url.parse(database_url)
    overrides = f"""

# -- tests/test_readme_production.py: this machine's services, short intervals
from motorhead_django.schedule import beat_schedule

DATABASES = {{"default": {database!r}}}
CELERY_BROKER_URL = {REDIS_URL!r}
MOTORHEAD.update(
    URL={upstream.url!r},
    WINDOW_SIZE={WINDOW},
    SWEEP_INTERVAL=1.0,
    RETRY_BACKOFF=0.2,
    RETRY_BACKOFF_MAX=1.0,
    MAX_RETRIES=10000,
    CONNECT_TIMEOUT=1.0,
    READ_TIMEOUT=2.0,
)
CELERY_BEAT_SCHEDULE = beat_schedule(sweep=1.0, pull=5.0, verify=30.0)
"""
    settings_py = project / "yourproject" / "settings.py"
    settings_py.write_text(settings_py.read_text() + overrides)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(project)])
    for name in ("DEBUG", "SECRET_KEY", "DATABASE_URL", "MOTORHEAD_URL"):
        env.pop(name, None)
    started: dict[str, Path] = {}
    for words in readme_commands():
        if words[:2] == ["pip", "install"]:
            continue  # this environment has the package (the checkout, on PYTHONPATH)
        if words[0] == "celery":
            role = words[3]
            assert words[:3] == ["celery", "-A", "yourproject"] and role in ("worker", "beat")
            started[role] = processes.start(role, executable(words), cwd=project, env=env)
        else:
            assert words[:2] == ["python", "manage.py"], words
            output = run(words, cwd=project, env=env)
            if words[2] == "check":
                assert "System check identified no issues" in output
    assert set(started) == {"worker", "beat"}
    processes.wait_for(started["worker"], " ready.")
    processes.wait_for(started["beat"], "beat: Starting...")

    timings = exercise(
        server=upstream,
        processes=processes,
        project=project,
        env=env,
        database_url=database_url,
        first_write=REQUEST + readme_write_block().text,
        worker_log=started["worker"],
        beat_log=started["beat"],
    )
    print(f"readme project: in step after {timings}")


# -- the example project ------------------------------------------------------------------


def test_the_example_projects_documented_worker_and_beat_keep_the_server_in_step(
    tmp_path, redis_broker, database_url, upstream, processes
):
    (block,) = [b for b in section_blocks(README, "The example project") if b.language == "sh"]
    documented = commands(block)
    assert [words[-4:-2] for words in documented] == [["example_project", "worker"]] + [
        ["example_project", "beat"]
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    for name in ("DEBUG", "SECRET_KEY", "DATABASE_URL", "MOTORHEAD_URL"):
        env.pop(name, None)
    env |= {
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url,
        "MOTORHEAD_WINDOW_SIZE": str(WINDOW),
        "MOTORHEAD_SWEEP_INTERVAL": "1",
        "MOTORHEAD_PULL_INTERVAL": "5",
        "CELERY_BEAT_SCHEDULE_FILENAME": str(tmp_path / "celerybeat-schedule"),
    }
    # The documented variables, with this machine's values.
    ours = {"CELERY_BROKER_URL": REDIS_URL, "MOTORHEAD_URL": upstream.url}
    run(["python", "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env | ours)
    logs: dict[str, Path] = {}
    for words in documented:
        variables, command = split_env(words)
        assert set(variables) == set(ours), variables
        role = command[3]
        logs[role] = processes.start(role, executable(command), cwd=ROOT, env=env | ours)
    processes.wait_for(logs["worker"], " ready.")
    processes.wait_for(logs["beat"], "beat: Starting...")
    # The web process has the same variables (the README says so).
    web_env = env | ours
    timings = exercise(
        server=upstream,
        processes=processes,
        project=ROOT,
        env=web_env,
        database_url=database_url,
        first_write=REQUEST + readme_write_block().text,
        worker_log=logs["worker"],
        beat_log=logs["beat"],
    )
    print(f"example project: in step after {timings}")


# -- dev.py example --worker ----------------------------------------------------------------


DEV_WITH_THIS_ENVIRONMENT = (
    "import sys\n"
    "from pathlib import Path\n"
    "sys.path.insert(0, {root!r})\n"
    "import dev\n"
    # This interpreter's environment stands in for .venv (no install into a shared venv).
    "dev.ensure_installed = lambda: None\n"
    "dev.PYTHON = Path(sys.executable)\n"
    "dev.VENV = Path(sys.executable).parent.parent\n"
    "sys.exit(dev.main(['example', '--worker']))\n"
)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dev_py_example_worker_starts_a_worker_and_beat_that_push_to_the_embedded_upstream(
    tmp_path, redis_broker, database_url, processes
):
    import requests

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    for name in ("DEBUG", "SECRET_KEY", "MOTORHEAD_URL"):
        env.pop(name, None)
    env |= {
        "PYTHONPATH": str(ROOT),
        "PORT": str(port),
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_BEAT_SCHEDULE_FILENAME": str(tmp_path / "celerybeat-schedule"),
        "MOTORHEAD_SWEEP_INTERVAL": "1",
    }
    code = DEV_WITH_THIS_ENVIRONMENT.format(root=str(ROOT))
    log = processes.start("dev-example", [sys.executable, "-c", code], cwd=ROOT, env=env)
    processes.wait_for(log, " ready.", timeout=120)
    processes.wait_for(log, "beat: Starting...")
    processes.wait_for(log, f"http://127.0.0.1:{port}/admin/")
    text = log.read_text()
    upstream = text.split("upstream for sync): ", 1)[1].split()[0]
    # It printed the commands it ran, with the embedded upstream's URL.
    for role in ("worker", "beat"):
        assert (
            f"CELERY_BROKER_URL={REDIS_URL} MOTORHEAD_URL={upstream} "
            f"MOTORHEAD_LLM_URL={upstream}/v1 DATABASE_URL={database_url} "
            f".venv/bin/celery -A example_project {role} -l info"
        ) in text

    key = run(
        ["python", "manage.py", "motorhead_apikey", "--owner", "admin", "--name", "dev"],
        cwd=ROOT,
        env=env | {"MOTORHEAD_URL": upstream},
    ).split()[-1]
    site = f"http://127.0.0.1:{port}/motorhead"
    wait_until(lambda: _answers(site), "the example answers", processes, timeout=60)
    messages = [{"role": "Human", "content": "hi"}, {"role": "AI", "content": "hello"}]
    answer = requests.post(
        f"{site}/sessions/dev-1/memory",
        json={"messages": messages},
        headers={"x-metal-api-key": key},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    # The key owner's session: on the server it is "u<owner pk>:dev-1" (docs/security.md).
    remote_id = remote_id_of(database_url, "dev-1")
    assert remote_id.startswith("u") and remote_id.endswith(":dev-1")

    def pushed() -> bool:
        window = requests.get(f"{upstream}/sessions/{remote_id}/memory", timeout=5).json()
        return list(reversed(window.get("messages", []))) == messages

    wait_until(pushed, "the worker pushed to the embedded upstream", processes)
    assert "motorhead_django.push_session" in log.read_text()


def _answers(url: str) -> bool:
    import requests

    try:
        return requests.get(f"{url}/", timeout=2).status_code == 200
    except requests.RequestException:
        return False
