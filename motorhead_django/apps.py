from importlib import import_module

from django.apps import AppConfig
from django.core.signals import request_finished, request_started
from django.db.backends.signals import connection_created
from django.utils.translation import gettext_lazy as _


class MotorheadConfig(AppConfig):
    name = "motorhead_django"
    verbose_name = _("Motorhead memory")
    # Pinned so that our migrations do not depend on the host project's setting.
    default_auto_field = "django.db.models.BigAutoField"

    def import_models(self) -> None:
        super().import_models()
        # The admin's job model lives in its own module (models.py is the core's).
        import_module(f"{self.name}.job_models")

    def ready(self) -> None:
        # Importing checks registers them; history registers its beat task and its checks,
        # jobs the admin's job task.
        from . import checks, history, jobs, migration_checks, redaction, search  # noqa: F401

        # Keys never reach a log record: keyed paths and echoed secrets are redacted first.
        redaction.install()
        request_started.connect(redaction.forget, dispatch_uid="motorhead-redaction-start")
        request_finished.connect(redaction.forget, dispatch_uid="motorhead-redaction-finish")
        _connect_metrics()
        # SQLite's LIKE folds ASCII only: the substring search compares search.fold() there.
        connection_created.connect(search.register_sqlite, dispatch_uid="motorhead-search-fold")


def _connect_metrics() -> None:
    """Metrics receivers: always connected, each a no-op while ``MOTORHEAD['METRICS']`` is off."""
    from celery.signals import task_postrun, task_prerun

    from . import metrics, signals

    signals.post_push.connect(metrics.on_post_push, dispatch_uid="motorhead-metrics-push")
    signals.push_failed.connect(metrics.on_push_failed, dispatch_uid="motorhead-metrics-failed")
    task_prerun.connect(metrics.on_task_prerun, dispatch_uid="motorhead-metrics-prerun")
    task_postrun.connect(metrics.on_task_postrun, dispatch_uid="motorhead-metrics-postrun")
