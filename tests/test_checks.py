"""Every system check id, through Django's check framework."""

from __future__ import annotations

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError


def ids(**motorhead) -> list[str]:
    from django.test import override_settings

    with override_settings(MOTORHEAD=motorhead):
        return sorted(
            message.id
            for message in checks.run_checks(include_deployment_checks=True)
            if message.id and message.id.startswith("motorhead_django.")
        )


def messages_for(code: str, **motorhead) -> list[checks.CheckMessage]:
    from django.test import override_settings

    with override_settings(MOTORHEAD=motorhead):
        return [m for m in checks.run_checks(include_deployment_checks=True) if m.id == code]


def test_defaults_are_clean():
    assert ids() == []


def test_a_full_valid_configuration_is_clean():
    assert (
        ids(
            URL="https://api.getmetal.io/v1/motorhead",
            API_KEY="k",
            CLIENT_ID="c",
            CONNECT_TIMEOUT=1,
            READ_TIMEOUT=2.5,
            WINDOW_SIZE=8,
            BATCH_SIZE=9,
            NAMESPACE="prod",
            SYNC_ENABLED=True,
            ALLOWED_ROLES=["Human", "AI"],
            TASK_QUEUE="motorhead",
            STATE_SAMPLE_INTERVAL=300,
            STATE_SAMPLE_DAYS=7,
        )
        == []
    )


def test_setting_must_be_a_dict(settings):
    settings.MOTORHEAD = "http://127.0.0.1:8080"
    found = [m for m in checks.run_checks() if m.id == "motorhead_django.E001"]
    assert len(found) == 1 and "must be a dict" in found[0].msg


def test_unknown_key_suggests_the_close_one():
    (warning,) = messages_for("motorhead_django.W001", URL_="http://x")
    assert "'URL_'" in warning.msg
    assert warning.hint == "Did you mean 'URL'?"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/",
        "127.0.0.1:8080",
        "http://",
        "http://host:notaport",
        "http://host/?x=1",
        "http://user:secret@host",
        42,
    ],
)
def test_bad_urls(url):
    assert ids(URL=url) == ["motorhead_django.E002"]


def test_credentials_in_url_are_not_echoed():
    (error,) = messages_for("motorhead_django.E002", URL="http://user:s3cret@host")
    assert "s3cret" not in error.msg + (error.hint or "")


def test_sync_enabled_without_url():
    (error,) = messages_for("motorhead_django.E003", SYNC_ENABLED=True)
    assert "no MOTORHEAD['URL']" in error.msg


def test_no_url_is_local_only_mode():
    assert ids(URL=None) == []


def test_api_key_needs_client_id():
    assert ids(URL="https://h", API_KEY="k") == ["motorhead_django.E004"]
    assert ids(URL="https://h", API_KEY=1, CLIENT_ID="c") == ["motorhead_django.E004"]


def test_api_key_is_never_echoed():
    found = messages_for("motorhead_django.E004", URL="https://h", API_KEY="topsecret")
    assert found and all("topsecret" not in m.msg + (m.hint or "") for m in found)


@pytest.mark.parametrize("value", [0, -1, "3", None, True])
def test_bad_timeouts(value):
    assert ids(READ_TIMEOUT=value) == ["motorhead_django.E005"]


@pytest.mark.parametrize("value", [0, -1, "7d", None])
def test_bad_active_period(value):
    assert ids(ACTIVE_PERIOD=value) == ["motorhead_django.E005"]
    assert ids(ACTIVE_PERIOD=3600) == []


@pytest.mark.parametrize("value", [0, -2, 1.5, "12", True])
def test_bad_window(value):
    assert ids(WINDOW_SIZE=value) == ["motorhead_django.E006"]


@pytest.mark.parametrize("value", [0, 14, "6", 2.0])
def test_bad_batch_size(value):
    assert ids(WINDOW_SIZE=12, BATCH_SIZE=value) == ["motorhead_django.E007"]


def test_batch_size_may_fill_the_window():
    assert ids(WINDOW_SIZE=12, BATCH_SIZE=13) == []


@pytest.mark.parametrize(
    "key,value",
    [("MAX_CONTENT_LENGTH", 0), ("MAX_MESSAGES_PER_REQUEST", "10"), ("MAX_RETRIES", -1)],
)
def test_bad_limits(key, value):
    assert ids(**{key: value}) == ["motorhead_django.E008"]


@pytest.mark.parametrize(
    "key,value",
    [("NAMESPACE", 3), ("TASK_QUEUE", ["q"]), ("ALLOWED_ROLES", "Human"), ("ALLOWED_ROLES", [])],
)
def test_bad_text_options(key, value):
    assert ids(**{key: value}) == ["motorhead_django.E009"]


@pytest.mark.parametrize(
    "key",
    [
        "SYNC_ENABLED",
        "LONG_TERM_MEMORY",
        "DELETE_REMOTE",
        "COMPAT_ALLOW_ANONYMOUS",
        "PULL_AFTER_PUSH",
        "METRICS",
    ],
)
def test_flags_must_be_booleans(key):
    assert ids(URL="http://h", **{key: "yes"}) == ["motorhead_django.E010"]


def test_key_over_plain_http_is_a_deploy_warning():
    assert ids(URL="http://h", API_KEY="k", CLIENT_ID="c") == ["motorhead_django.W002"]
    assert ids(URL="https://h", API_KEY="k", CLIENT_ID="c") == []


@pytest.mark.parametrize("value", ["no.such.module.fn", 3, "motorhead_django.conf.DEFAULTS"])
def test_summarizer_must_be_an_importable_callable(value):
    assert ids(SUMMARIZER=value) == ["motorhead_django.E011"]
    assert ids(SUMMARIZER="tests.test_memory.joining_summarizer") == []


def test_anonymous_compat_access_is_a_deploy_warning():
    assert ids(COMPAT_ALLOW_ANONYMOUS=True) == ["motorhead_django.W003"]
    assert ids(COMPAT_ALLOW_ANONYMOUS=False) == []


def test_manage_check_reports_errors_clearly(settings, capsys):
    settings.MOTORHEAD = {"URL": "ftp://nowhere", "READ_TIMEOUT": 0}
    with pytest.raises(SystemCheckError) as raised:
        call_command("check")
    text = str(raised.value)
    assert "motorhead_django.E002" in text and "motorhead_django.E005" in text
    assert "http:// or https://" in text


def test_a_dummy_cache_is_a_deploy_warning_since_throttles_count_nothing(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    assert ids() == ["motorhead_django.W004"]
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert ids() == []


@pytest.fixture
def bare_celery(settings, monkeypatch):
    """No Celery settings at all, and a current Celery app configured with nothing."""
    from celery import Celery

    from . import celery_app

    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    del settings.CELERY_BROKER_URL
    del settings.CELERY_TASK_ALWAYS_EAGER
    app = Celery("bare", set_as_current=False)
    app.set_current()
    yield app
    celery_app.app.set_current()


def test_a_url_without_a_broker_or_eager_mode_is_an_error(bare_celery):
    (error,) = messages_for("motorhead_django.E014", URL="http://127.0.0.1:8080")
    assert "neither a broker nor eager mode" in error.msg
    assert "CELERY_BROKER_URL" in error.hint and "CELERY_TASK_ALWAYS_EAGER" in error.hint
    # Local-only mode, or a paused sync, needs no broker.
    assert messages_for("motorhead_django.E014") == []
    assert messages_for("motorhead_django.E014", URL="http://x:1", SYNC_ENABLED=False) == []


@pytest.mark.parametrize(
    "configure",
    [
        lambda settings, app: setattr(settings, "CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
        lambda settings, app: setattr(settings, "CELERY_TASK_ALWAYS_EAGER", True),
        lambda settings, app: app.conf.update(broker_url="redis://127.0.0.1:6379/0"),
        lambda settings, app: app.conf.update(task_always_eager=True),
    ],
    ids=["broker-setting", "eager-setting", "broker-on-app", "eager-on-app"],
)
def test_a_broker_or_eager_mode_in_settings_or_on_the_app_passes(bare_celery, settings, configure):
    configure(settings, bare_celery)
    assert messages_for("motorhead_django.E014", URL="http://127.0.0.1:8080") == []


# -- the history of sync states (history.py) -----------------------------------------


@pytest.mark.parametrize("value", [0, -5, "300", None, True])
def test_bad_state_sample_interval(value):
    assert ids(STATE_SAMPLE_INTERVAL=value) == ["motorhead_django.E090"]
    assert ids(STATE_SAMPLE_INTERVAL=60) == ids(STATE_SAMPLE_INTERVAL=30.5) == []


@pytest.mark.parametrize("value", [0, 1.5, "30", None, False])
def test_bad_state_sample_days(value):
    (error,) = messages_for("motorhead_django.E091", STATE_SAMPLE_DAYS=value)
    assert repr(value) in error.msg and "bounded" in error.hint
    assert ids(STATE_SAMPLE_DAYS=1) == []


def test_a_beat_entry_sampling_at_another_interval_is_a_warning(settings):
    from datetime import timedelta

    from motorhead_django.schedule import beat_schedule

    settings.CELERY_BEAT_SCHEDULE = beat_schedule(states=60)
    (warning,) = messages_for("motorhead_django.W090")
    assert "every 60 s" in warning.msg and "is 300 s" in warning.msg
    assert "beat_schedule(states=...)" in warning.hint
    assert ids(STATE_SAMPLE_INTERVAL=60) == []
    settings.CELERY_BEAT_SCHEDULE = {
        "mine": {"task": "motorhead_django.sample_states", "schedule": timedelta(minutes=5)}
    }
    assert ids() == []
    assert ids(STATE_SAMPLE_INTERVAL=120) == ["motorhead_django.W090"]
