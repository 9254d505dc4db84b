"""Settings of the Celery worker processes that the task tests start.

They share the test run's database (its name comes from the environment) and
point at the test's Motorhead server and broker.
"""

import json
import os

from tests.settings import *  # noqa: F403

DATABASES["default"]["NAME"] = os.environ["MOTORHEAD_TEST_DATABASE"]  # noqa: F405
MOTORHEAD = json.loads(os.environ["MOTORHEAD_TEST_SETTINGS"])
CELERY_BROKER_URL = os.environ["MOTORHEAD_TEST_BROKER"]
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redeliver the unacknowledged tasks of a killed worker soon (Redis transport).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 10}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# The tests never use remote control; without it no pidbox queue is declared.
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
