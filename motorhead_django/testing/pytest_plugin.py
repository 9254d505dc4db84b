"""pytest fixtures for the Motorhead test server (registered through the ``pytest11`` entry point).

``motorhead_server``: a default server (window 12), stopped after the test.
``motorhead_server_factory(**options)``: as many servers as a test needs, with
any :class:`~motorhead_django.testing.MotorheadTestServer` option.
Point your settings at one with ``settings.MOTORHEAD = {"URL": server.url}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .server import MotorheadTestServer


@pytest.fixture
def motorhead_server_factory() -> Iterator[Callable[..., MotorheadTestServer]]:
    servers: list[MotorheadTestServer] = []

    def start(**options: Any) -> MotorheadTestServer:
        server = MotorheadTestServer(**options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def motorhead_server(
    motorhead_server_factory: Callable[..., MotorheadTestServer],
) -> MotorheadTestServer:
    return motorhead_server_factory()
