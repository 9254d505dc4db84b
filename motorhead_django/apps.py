from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MotorheadConfig(AppConfig):
    name = "motorhead_django"
    verbose_name = _("Motorhead memory")
    # Pinned so that our migrations do not depend on the host project's setting.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
