"""Real Celery worker processes and a Redis server the tests can stop, for the task tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent


class Worker:
    """``celery -A tests.celery_app worker`` in its own process group, logging to a file."""

    def __init__(
        self,
        log_dir: Path,
        name: str,
        *,
        broker_url: str,
        database: str,
        motorhead: dict[str, Any],
        queue: str,
        concurrency: int = 2,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"worker-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.env = os.environ | {
            "DJANGO_SETTINGS_MODULE": "tests.worker_settings",
            "MOTORHEAD_TEST_DATABASE": database,
            "MOTORHEAD_TEST_SETTINGS": json.dumps(motorhead),
            "MOTORHEAD_TEST_BROKER": broker_url,
            "PYTHONPATH": str(ROOT),
        }
        self.args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.celery_app",
            "worker",
            "--pool=prefork",
            f"--concurrency={concurrency}",
            # Unique: a broker refuses a second worker of the same name (its pidbox).
            f"--hostname={name}-{uuid.uuid4().hex[:8]}@%h",
            f"--queues={queue}",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]

    def start(self, timeout: float = 60.0) -> Worker:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while b" ready." not in self.log_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {self.name} did not start:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def kill(self) -> None:
        """SIGKILL the whole worker: the main process and its pool children."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class RedisServer:
    """A redis-server of the test's own, on a fixed free port, that can be stopped and restarted."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed: the broker-outage test starts its own"
            if IN_CI:
                pytest.fail(f"{message}; CI=true, so a missing service is a failure")
            pytest.skip(message)
        self.binary = binary
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
