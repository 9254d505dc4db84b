"""Settings for ``bench/api_throughput.py``: the example project's, serving bench/api_urls.py.

The example project is what a host project looks like: its middleware, and
persistent database connections (``conn_max_age=60``). Local-only memory (no
``MOTORHEAD['URL']``), so a write schedules no push and the figures are the
web layer and the database alone. The database comes from ``DATABASE_URL``.
"""

import os

# The example refuses to start without a key unless DEBUG, which would log every query.
os.environ.setdefault("SECRET_KEY", "motorhead-django-bench-not-secret")

from example_project.settings import *  # noqa: E402, F403

DEBUG = False
ROOT_URLCONF = "bench.api_urls"
MOTORHEAD = {"URL": None, "WINDOW_SIZE": 12}
