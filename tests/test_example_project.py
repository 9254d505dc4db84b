"""The example project starts from its environment, the way a deployment would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Every test runs manage.py or Python in a subprocess of its own (seconds each).
pytestmark = pytest.mark.slow


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
    for key in ("DEBUG", "SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "MOTORHEAD_URL"):
        clean.pop(key, None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_refuses_to_start_without_a_secret_key_in_production():
    result = manage("check", DEBUG="false")
    assert result.returncode != 0
    assert "Set SECRET_KEY (or DEBUG=true for local development)." in result.stderr


def test_checks_pass_in_debug_with_the_embedded_defaults():
    result = manage("check", DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_bad_motorhead_url_is_reported_by_the_system_checks():
    result = manage("check", DEBUG="true", MOTORHEAD_URL="ftp://example")
    assert result.returncode != 0
    assert "motorhead_django.E002" in result.stderr


def test_motorhead_settings_come_from_the_environment():
    code = (
        "from motorhead_django.conf import motorhead_settings as s;"
        "print(s.URL, s.SYNC_ENABLED, s.API_KEY is not None)"
    )
    result = manage(
        "shell",
        "-v",
        "0",
        "-c",
        code,
        DEBUG="true",
        MOTORHEAD_URL="https://api.getmetal.io/v1/motorhead",
        MOTORHEAD_API_KEY="k",
        MOTORHEAD_CLIENT_ID="c",
    )
    assert result.stdout.split() == ["https://api.getmetal.io/v1/motorhead", "True", "True"]


def test_migrate_and_demo_user_on_a_fresh_sqlite_file(tmp_path):
    database = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    assert manage("migrate", "--noinput", DEBUG="true", DATABASE_URL=database).returncode == 0
    result = manage("example_demo_user", DEBUG="true", DATABASE_URL=database)
    assert result.stdout.strip() == "Created demo admin user: admin / admin"
    result = manage("example_demo_user", DEBUG="true", DATABASE_URL=database)
    assert result.stdout.strip() == "Reset demo admin user: admin / admin"


def test_celery_uses_the_broker_from_the_environment(redis_url):
    code = (
        "from example_project.celery import app;"
        "app.connection_for_write().ensure_connection(max_retries=1);"
        "print(app.conf.broker_url, app.conf.task_always_eager)"
    )
    result = manage("shell", "-v", "0", "-c", code, DEBUG="true", CELERY_BROKER_URL=redis_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [redis_url, "False"]


def test_celery_runs_eagerly_without_a_broker():
    code = "from example_project.celery import app; print(app.conf.task_always_eager)"
    result = manage("shell", "-v", "0", "-c", code, DEBUG="true")
    assert result.stdout.split() == ["True"]


def test_debug_and_allowed_hosts_are_read():
    code = "from django.conf import settings; print(settings.DEBUG, settings.ALLOWED_HOSTS)"
    result = manage(
        "shell", "-v", "0", "-c", code, SECRET_KEY="x", DEBUG="false", ALLOWED_HOSTS="a.example,b"
    )
    assert result.stdout.strip() == "False ['a.example', 'b']"


def test_the_settings_carry_the_beat_schedule_with_intervals_from_the_environment():
    code = (
        "from django.conf import settings as s;"
        "print(sorted((e['task'], e['schedule']) for e in s.CELERY_BEAT_SCHEDULE.values()));"
        "print(s.MOTORHEAD['SWEEP_INTERVAL'])"
    )
    result = manage("shell", "-v", "0", "-c", code, MOTORHEAD_SWEEP_INTERVAL="2")
    assert result.returncode == 0, result.stderr
    schedule, sweep = result.stdout.splitlines()
    assert schedule == str(
        [
            ("motorhead_django.pull_active", 300.0),
            ("motorhead_django.retention", 3600.0),  # a no-op without a retention policy
            ("motorhead_django.sample_states", 300.0),
            ("motorhead_django.sweep", 2.0),
            ("motorhead_django.verify_active", 3600.0),
        ]
    )
    assert sweep == "2.0"


def test_the_celery_app_loads_with_neither_debug_nor_secret_key_set():
    """`celery -A example_project ...` defaults DEBUG the way manage.py does."""
    clean = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY")}
    clean.pop("DJANGO_SETTINGS_MODULE", None)
    # What `celery -A example_project` does first: import the app and read its configuration.
    code = (
        "import example_project.celery as c;"
        "print(c.app.conf.beat_schedule['motorhead-django-sweep']['task'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "motorhead_django.sweep"


def test_dev_py_prints_the_worker_and_beat_commands_of_the_readme():
    """The commands `dev.py example` prints are the README's, with the values of this run."""
    sys.path.insert(0, str(ROOT))
    try:
        import dev
    finally:
        sys.path.remove(str(ROOT))
    env = {
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        "MOTORHEAD_URL": "http://127.0.0.1:8080",
    }
    readme = (ROOT / "README.md").read_text()
    for command in dev.celery_commands(env):
        assert f"\n{command}\n" in readme
    printed = dev.celery_commands(env | {"MOTORHEAD_URL": "http://127.0.0.1:41234"})
    assert printed[0] == (
        "CELERY_BROKER_URL=redis://127.0.0.1:6379/0 MOTORHEAD_URL=http://127.0.0.1:41234 "
        ".venv/bin/celery -A example_project worker -l info"
    )


def test_the_worker_runs_one_process_on_sqlite_and_the_default_on_postgresql():
    code = (
        "from django.conf import settings as s; print(getattr(s, 'CELERY_WORKER_CONCURRENCY', 0))"
    )
    assert manage("shell", "-v", "0", "-c", code).stdout.strip() == "1"
    postgres = "postgres://postgres@127.0.0.1:5432/unused"
    result = manage("shell", "-v", "0", "-c", code, DATABASE_URL=postgres)
    assert result.stdout.strip() == "0", result.stderr


def test_the_example_summarises_with_the_test_servers_llm(tmp_path, motorhead_server):
    """What `dev.py example` sets: the built-in summariser on the test server's /v1 routes."""
    script = (
        "from motorhead_django import memory;"
        "s = memory.get_or_create_session('demo');"
        "memory.append_messages(s, [('Human', f'm{n}') for n in range(15)]);"
        "s.refresh_from_db();"
        "print(repr(s.context), s.tokens, s.summarized_through)"
    )
    env = {"DEBUG": "true", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    env["MOTORHEAD_LLM_URL"] = motorhead_server.openai_url
    assert manage("migrate", "--noinput", **env).returncode == 0
    result = manage("shell", "-c", script, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "2"  # 15 messages, a window of 13
    assert "'Human: m0\\nHuman: m1'" in result.stdout
    assert len(motorhead_server.openai.chat_calls()) == 1
