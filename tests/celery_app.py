"""The test suite's Celery app: eager by default, a real broker in the worker tests.

Importing it (conftest does) makes it the current app, so that no test falls
back to Celery's default app, which would publish to amqp://localhost.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("motorhead_tests", include=["motorhead_django.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.set_default()
