"""The settings object reads MOTORHEAD at access time, with documented defaults."""

from __future__ import annotations

from motorhead_django.conf import DEFAULTS, motorhead_settings


def test_defaults():
    assert motorhead_settings.URL is None
    assert motorhead_settings.SYNC_ENABLED is False
    assert motorhead_settings.WINDOW_SIZE == 12
    assert motorhead_settings.BATCH_SIZE == 6
    assert motorhead_settings.NAMESPACE == ""
    assert motorhead_settings.ALLOWED_ROLES is None
    assert motorhead_settings.USER_AGENT.startswith("motorhead-django/")
    assert motorhead_settings.ACTIVE_PERIOD == 7 * 24 * 3600.0
    assert motorhead_settings.DELETE_REMOTE is True


def test_every_default_has_a_property():
    for key in DEFAULTS:
        getattr(motorhead_settings, key)


def test_read_at_access_time(settings):
    settings.MOTORHEAD = {"URL": "http://127.0.0.1:8080/", "WINDOW_SIZE": 8}
    assert motorhead_settings.URL == "http://127.0.0.1:8080"
    assert motorhead_settings.SYNC_ENABLED is True
    assert motorhead_settings.BATCH_SIZE == 4
    settings.MOTORHEAD = {"URL": "http://127.0.0.1:8080", "SYNC_ENABLED": False}
    assert motorhead_settings.SYNC_ENABLED is False


def test_sync_needs_a_url_even_when_enabled(settings):
    settings.MOTORHEAD = {"SYNC_ENABLED": True}
    assert motorhead_settings.SYNC_ENABLED is False


def test_roles_and_timeouts_are_coerced(settings):
    settings.MOTORHEAD = {"ALLOWED_ROLES": ["Human", "AI"], "READ_TIMEOUT": 5}
    assert frozenset({"Human", "AI"}) == motorhead_settings.ALLOWED_ROLES
    assert motorhead_settings.READ_TIMEOUT == 5.0
