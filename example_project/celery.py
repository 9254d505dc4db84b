"""Celery for the example project: `celery -A example_project worker` / `beat`.

Like manage.py, a development entry point: DEBUG is on unless the environment
says otherwise (so SECRET_KEY has a development default); set DEBUG=false and
SECRET_KEY for a real deployment, as for wsgi.py. The worker and beat read the
same variables as the web process (README.md, "The example project").
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
os.environ.setdefault("DEBUG", "true")

app = Celery("example_project")
# Every CELERY_* setting in settings.py configures this app.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
