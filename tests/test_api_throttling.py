"""Throttles on by default: failed authentication per address and per key prefix, request rates."""

from __future__ import annotations

import secrets
import time

import pytest
from django.contrib.auth import get_user_model
from django.core.checks import run_checks
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from motorhead_django.api import throttling
from motorhead_django.models import ApiKey, ChatSession

pytestmark = pytest.mark.django_db

DEFAULT_FAILURES_PER_ADDRESS = 30
DEFAULT_FAILURES_PER_PREFIX = 10


def issue_key(username: str = "kim") -> str:
    user, _ = get_user_model().objects.get_or_create(username=username)
    return ApiKey.issue(user, "k")[1]


def sessions(client, key: str, address: str = "127.0.0.1", in_url: bool = False):
    if in_url:
        return client.get(f"/motorhead/k/{key}/sessions", REMOTE_ADDR=address)
    return client.get("/motorhead/sessions", HTTP_X_METAL_API_KEY=key, REMOTE_ADDR=address)


def wrong_key(n: int) -> str:
    # A fresh, well-formed key each time, so only the address is shared.
    return f"mhd_{n:08x}_" + "x" * 43


def test_failed_api_keys_are_throttled_per_address_with_retry_after(client):
    good = issue_key()
    statuses = [sessions(client, wrong_key(n)).status_code for n in range(40)]
    assert statuses == [401] * DEFAULT_FAILURES_PER_ADDRESS + [429] * 10
    blocked = sessions(client, good)  # even a right key: the address is blocked
    assert blocked.status_code == 429
    assert 1 <= int(blocked["Retry-After"]) <= 60
    assert "Too many failed authentications" in blocked.json()["detail"]
    in_url = sessions(client, wrong_key(99), in_url=True)
    assert in_url.status_code == 429  # the keyed URLs share the counter
    assert sessions(client, good, address="10.0.0.2").status_code == 200  # another address


def test_failed_guesses_at_one_prefix_are_throttled_from_any_address(client):
    good = issue_key()
    prefix = good[4:12]
    guesses = [f"mhd_{prefix}_{n:043d}" for n in range(12)]
    statuses = [
        sessions(client, guess, address=f"10.1.0.{n}").status_code
        for n, guess in enumerate(guesses)
    ]
    assert statuses == [401] * DEFAULT_FAILURES_PER_PREFIX + [429] * 2
    assert sessions(client, good, address="10.2.0.1").status_code == 429  # that prefix is locked
    other = issue_key("lee")
    assert sessions(client, other, address="10.2.0.2").status_code == 200


def test_the_block_lifts_when_the_window_passes(client, monkeypatch, settings):
    settings.MOTORHEAD = {"THROTTLE_RATES": {"auth-address": "2/min"}}
    good = issue_key()
    assert [sessions(client, wrong_key(n)).status_code for n in range(3)] == [401, 401, 429]
    monkeypatch.setattr(throttling._FailureCounter, "timer", lambda self: time.time() + 61)
    assert sessions(client, good).status_code == 200


def test_failed_tokens_are_throttled_on_the_rest_routes():
    user = get_user_model().objects.create_user("tok")
    token = Token.objects.create(user=user)
    api = APIClient()
    statuses = []
    for _ in range(DEFAULT_FAILURES_PER_ADDRESS + 2):
        api.credentials(HTTP_AUTHORIZATION=f"Token {secrets.token_hex(20)}")
        statuses.append(api.get("/api/sessions/").status_code)
    assert statuses == [401] * DEFAULT_FAILURES_PER_ADDRESS + [429] * 2
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get("/api/sessions/").status_code == 429
    assert api.get("/api/sessions/", REMOTE_ADDR="10.3.0.1").status_code == 200


def test_request_rates_are_on_by_default_and_overridable(client, settings):
    assert throttling.rate("rest") == "1200/min" and throttling.rate("compat") == "2400/min"
    key = issue_key()
    settings.MOTORHEAD = {"THROTTLE_RATES": {"compat": "3/min"}}
    statuses = [sessions(client, key).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    settings.MOTORHEAD = {"THROTTLE_RATES": {"compat": None}}
    assert all(sessions(client, key).status_code == 200 for _ in range(5))


def test_rest_rate_counts_per_user_and_overrides_the_old_drf_setting(settings):
    settings.REST_FRAMEWORK = settings.REST_FRAMEWORK | {
        "DEFAULT_THROTTLE_RATES": {"motorhead-rest": "100/min"}
    }
    settings.MOTORHEAD = {"THROTTLE_RATES": {"rest": "2/min"}}
    one, two = (get_user_model().objects.create_user(name) for name in ("one", "two"))
    apis = []
    for user in (one, two):
        api = APIClient()
        api.force_authenticate(user)
        apis.append(api)
    assert [apis[0].get("/api/sessions/").status_code for _ in range(3)] == [200, 200, 429]
    assert apis[1].get("/api/sessions/").status_code == 200
    throttled = apis[0].post("/api/sessions/", {"session_id": "x"}, format="json")
    assert throttled.status_code == 429 and "Retry-After" in throttled
    assert not ChatSession.objects.exists()


@pytest.mark.parametrize(
    "rates",
    [
        "30/min",
        {"auth-address": "thirty/min"},
        {"auth-address": "0/min"},
        {"auth-address": "30/fortnight"},
        {"auth-adress": "30/min"},
        {"rest": 30},
    ],
)
def test_bad_throttle_rates_are_check_errors(settings, rates):
    settings.MOTORHEAD = {"THROTTLE_RATES": rates}
    ids = [m.id for m in run_checks() if m.id and m.id.startswith("motorhead_django")]
    assert ids == ["motorhead_django.E012"]


def test_good_throttle_rates_pass_the_checks(settings):
    settings.MOTORHEAD = {
        "THROTTLE_RATES": {"rest": "10/s", "compat": "5/minute", "auth-prefix": None}
    }
    assert not [m for m in run_checks() if m.id and m.id.startswith("motorhead_django")]


def test_failed_auth_counts_by_remote_addr_not_a_client_sent_forwarded_for(client):
    # Rotating X-Forwarded-For does not dodge the per-address limit ...
    statuses = [
        client.get(
            "/motorhead/sessions",
            HTTP_X_METAL_API_KEY=wrong_key(n),
            HTTP_X_FORWARDED_FOR=f"10.9.{n // 256}.{n % 256}",
            REMOTE_ADDR="192.0.2.1",
        ).status_code
        for n in range(DEFAULT_FAILURES_PER_ADDRESS + 2)
    ]
    assert statuses == [401] * DEFAULT_FAILURES_PER_ADDRESS + [429] * 2
    # ... and spoofing a victim's address does not lock the victim out.
    good = issue_key()
    for n in range(DEFAULT_FAILURES_PER_ADDRESS + 2):
        client.get(
            "/motorhead/sessions",
            HTTP_X_METAL_API_KEY=wrong_key(100 + n),
            HTTP_X_FORWARDED_FOR="198.51.100.7",
            REMOTE_ADDR="192.0.2.2",
        )
    assert sessions(client, good, address="198.51.100.7").status_code == 200


def test_forwarded_for_is_used_only_with_num_proxies(client, settings):
    settings.REST_FRAMEWORK = settings.REST_FRAMEWORK | {"NUM_PROXIES": 1}
    # Behind one proxy (REMOTE_ADDR is the proxy): the client is the last XFF hop.
    statuses = [
        client.get(
            "/motorhead/sessions",
            HTTP_X_METAL_API_KEY=wrong_key(n),
            HTTP_X_FORWARDED_FOR=f"spoofed, 10.8.0.{n}",
            REMOTE_ADDR="192.0.2.9",
        ).status_code
        for n in range(DEFAULT_FAILURES_PER_ADDRESS + 2)
    ]
    assert 429 not in statuses  # every attempt came from a different client
    blocked = [
        client.get(
            "/motorhead/sessions",
            HTTP_X_METAL_API_KEY=wrong_key(200 + n),
            HTTP_X_FORWARDED_FOR=f"spoofed-{n}, 10.8.1.1",
            REMOTE_ADDR="192.0.2.9",
        ).status_code
        for n in range(DEFAULT_FAILURES_PER_ADDRESS + 1)
    ]
    assert blocked[-1] == 429


def test_anonymous_compat_rate_counts_by_remote_addr(client, settings):
    settings.MOTORHEAD = {"COMPAT_ALLOW_ANONYMOUS": True, "THROTTLE_RATES": {"compat": "3/min"}}
    statuses = [
        client.get(
            "/motorhead/sessions", HTTP_X_FORWARDED_FOR=f"10.7.0.{n}", REMOTE_ADDR="192.0.2.3"
        ).status_code
        for n in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    other = client.get(
        "/motorhead/sessions", HTTP_X_FORWARDED_FOR="192.0.2.3", REMOTE_ADDR="192.0.2.4"
    )
    assert other.status_code == 200
