"""The beat schedule: importable from settings, before Django and the models are loaded."""

from __future__ import annotations

import os
import subprocess
import sys

from motorhead_django import schedule, tasks


def test_settings_can_import_it_before_django_is_set_up():
    code = (
        "import sys\n"
        "from motorhead_django.schedule import BEAT_SCHEDULE\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('django', 'motorhead_django.')))\n"
        "print(loaded, sorted(BEAT_SCHEDULE))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    loaded, names = result.stdout.strip().split("] [")
    assert loaded == "['motorhead_django.schedule'"  # no Django, no models
    assert names == (
        "'motorhead-django-pull', 'motorhead-django-retention', "
        "'motorhead-django-sample-states', 'motorhead-django-sweep', 'motorhead-django-verify']"
    )


def test_the_entries_name_registered_tasks_at_the_default_intervals():
    from celery import current_app

    entries = schedule.BEAT_SCHEDULE
    assert {name: (e["task"], e["schedule"]) for name, e in entries.items()} == {
        "motorhead-django-sweep": ("motorhead_django.sweep", 60.0),
        "motorhead-django-pull": ("motorhead_django.pull_active", 300.0),
        "motorhead-django-verify": ("motorhead_django.verify_active", 3600.0),
        # A no-op without a retention policy (tests/test_governance.py).
        "motorhead-django-retention": ("motorhead_django.retention", 3600.0),
        # The overview's history chart, at the default STATE_SAMPLE_INTERVAL.
        "motorhead-django-sample-states": ("motorhead_django.sample_states", 300.0),
    }
    for entry in entries.values():
        assert entry["task"] in current_app.tasks


def test_other_intervals_and_a_queue():
    entries = schedule.beat_schedule(
        sweep=5, pull=10, verify=20, retention=30, states=40, queue="motorhead"
    )
    assert [e["schedule"] for e in entries.values()] == [5.0, 10.0, 20.0, 30.0, 40.0]
    assert all(e["options"] == {"queue": "motorhead"} for e in entries.values())
    assert all("options" not in e for e in schedule.beat_schedule().values())


def test_the_tasks_module_still_exports_it():
    assert tasks.BEAT_SCHEDULE is schedule.BEAT_SCHEDULE


def test_the_default_state_sampling_matches_the_setting_s_default():
    from motorhead_django.conf import DEFAULTS

    entry = schedule.BEAT_SCHEDULE["motorhead-django-sample-states"]
    assert entry["schedule"] == DEFAULTS["STATE_SAMPLE_INTERVAL"]
