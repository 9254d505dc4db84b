"""Migrations are in step with the models, whatever the host's DEFAULT_AUTO_FIELD."""

from __future__ import annotations

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_no_missing_migrations():
    call_command("makemigrations", "motorhead_django", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_no_missing_migrations_with_another_auto_field(settings):
    # The app pins its own default_auto_field, so a host project's choice
    # must not produce a migration for it.
    settings.DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
    call_command("makemigrations", "motorhead_django", "--check", "--dry-run", verbosity=0)
