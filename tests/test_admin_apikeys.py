"""API keys in the admin and from the command line: shown once, stored hashed, revocable."""

from __future__ import annotations

import hashlib
import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse

from motorhead_django.models import ApiKey

pytestmark = pytest.mark.django_db


def test_issue_stores_only_the_hash_and_find_checks_it():
    user = get_user_model().objects.create(username="u")
    key, raw = ApiKey.issue(user, "k", namespace="ns")
    assert raw.startswith(f"mhd_{key.prefix}_") and len(raw) > 40
    assert key.hashed_key == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in str(ApiKey.objects.values().get()) and raw not in str(key)
    assert ApiKey.find(raw) == key
    assert ApiKey.find(raw + "x") is None and ApiKey.find(f"mhd_{key.prefix}") is None
    key.revoke()
    assert ApiKey.find(raw) is None


def test_admin_add_shows_the_key_once(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:motorhead_django_apikey_add"),
        {"name": "bot", "owner": admin_user.pk, "namespace": ""},
        follow=True,
    )
    assert response.status_code == 200
    key = ApiKey.objects.get()
    assert key.namespace is None and key.owner == admin_user
    assert response.redirect_chain == []  # the key is in this page's body, not behind a redirect
    raw = re.search(rb'value="(mhd_[^"]+)"', response.content).group(1).decode()
    assert ApiKey.find(raw) == key
    assert response.content.count(raw.encode()) == 1
    # Nowhere else: not on the change page nor in the list.
    for url in (
        reverse("admin:motorhead_django_apikey_change", args=[key.pk]),
        reverse("admin:motorhead_django_apikey_changelist"),
    ):
        page = admin_client.get(url)
        assert page.status_code == 200
        assert raw.encode() not in page.content and key.hashed_key.encode() not in page.content
        assert f"mhd_{key.prefix}_".encode() in page.content


def test_admin_revoke_action(admin_client, admin_user):
    keys = [ApiKey.issue(admin_user, f"k{n}")[0] for n in range(3)]
    response = admin_client.post(
        reverse("admin:motorhead_django_apikey_changelist"),
        {"action": "revoke", "_selected_action": [k.pk for k in keys[:2]], "post": "yes"},
        follow=True,
    )
    assert "Revoked 2 API keys." in response.content.decode()
    assert ApiKey.objects.active().get() == keys[2]


def test_command_prints_the_key_on_its_last_line():
    get_user_model().objects.create(username="deploy")
    out = StringIO()
    call_command("motorhead_apikey", "--owner", "deploy", "--namespace", "team", stdout=out)
    raw = out.getvalue().splitlines()[-1]
    key = ApiKey.find(raw)
    assert key is not None and key.namespace == "team" and key.owner.username == "deploy"
    call_command("motorhead_apikey", "--revoke", raw[:12], stdout=StringIO())
    assert ApiKey.find(raw) is None


def test_command_errors():
    with pytest.raises(CommandError, match="No user"):
        call_command("motorhead_apikey", "--owner", "ghost")
    with pytest.raises(CommandError, match="--owner"):
        call_command("motorhead_apikey")
    with pytest.raises(CommandError, match="No API key"):
        call_command("motorhead_apikey", "--revoke", "mhd_00000000")


def test_command_lists_active_keys_and_with_all_the_revoked_ones():
    owner = get_user_model().objects.create(username="lister")
    kept, raw_kept = ApiKey.issue(owner, "kept bot", namespace="team")
    gone, _ = ApiKey.issue(owner, "old bot")
    gone.revoke()
    out = StringIO()
    call_command("motorhead_apikey", "--list", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:3] == ["PREFIX", "OWNER", "NAMESPACE"]
    assert len(lines) == 2 and f"mhd_{kept.prefix}" in lines[1] and "'team'" in lines[1]
    assert "never" in lines[1] and "active" in lines[1]
    assert raw_kept not in out.getvalue()  # only the prefix, never the secret
    out = StringIO()
    call_command("motorhead_apikey", "--list", "--all", stdout=out)
    listed = out.getvalue()
    assert f"mhd_{gone.prefix}" in listed and "(all)" in listed
    with pytest.raises(CommandError, match="--list"):
        call_command("motorhead_apikey", "--list", "--revoke", kept.prefix)


def test_command_list_says_when_there_is_none():
    out = StringIO()
    call_command("motorhead_apikey", "--list", stdout=out)
    assert out.getvalue().strip() == "No active API keys."
