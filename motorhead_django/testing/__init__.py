"""Test tools for projects that use motorhead-django.

:class:`MotorheadTestServer` is a Motorhead-compatible HTTP server on loopback
with inspectable state and fault injection; the pytest plugin (installed with
the package) provides the ``motorhead_server`` and ``motorhead_server_factory``
fixtures. Nothing here imports Django models, so the plugin is safe to load in
any pytest run.
"""

from .faults import Faults
from .server import MotorheadTestServer, RecordedRequest
from .store import default_summarizer

__all__ = ["Faults", "MotorheadTestServer", "RecordedRequest", "default_summarizer"]
