"""The admin's sessions list at 100,000 sessions: time and queries per page.

    .venv/bin/python bench/admin_changelist.py

PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test); it creates
and drops test_motorhead_bench_admin. It fills 100,000 sessions (a tenth with an owner,
five namespaces, every session with 3 messages), then times the changelist through
Django's test client as a logged-in superuser: the first page, a filtered page, the
last page, and a search by message content. Best of 5 for each, with its query count.
"""

from __future__ import annotations

import time

from _setup import own_database, setup_django  # noqa: E402

setup_django()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

from motorhead_django.models import ChatMessage, ChatSession, server_id  # noqa: E402

SESSIONS = 100_000


def fill() -> None:
    users = get_user_model().objects
    owners = [users.create_user(f"user{n}") for n in range(100)]
    for start in range(0, SESSIONS, 10_000):
        sessions = ChatSession.objects.bulk_create(
            ChatSession(
                session_id=f"session-{n}",
                # bulk_create skips save(): the server id is given here.
                remote_id=server_id(owners[n % 100].pk if n % 10 == 0 else None, f"session-{n}"),
                namespace=f"ns{n % 5}",
                owner=owners[n % 100] if n % 10 == 0 else None,
                sync_state=("synced", "pending", "failed")[n % 3],
                last_sequence=3,
                context=f"summary of conversation {n}",
            )
            for n in range(start, start + 10_000)
        )
        ChatMessage.objects.bulk_create(
            ChatMessage(session=s, sequence=k, role="Human", content=f"{s.session_id} says {k}")
            for s in sessions
            for k in (1, 2, 3)
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def timed(client: Client, url: str, params: dict[str, str]) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(5):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url, params)
            elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.status_code
        best, count = min(best, elapsed), len(queries)
    return best, count


def main() -> None:
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["*"]
    setup_test_environment()
    with own_database("motorhead_bench_admin"):
        fill()
        admin = get_user_model().objects.create_superuser("admin", "a@example.com", "admin")
        client = Client()
        client.force_login(admin)
        url = "/admin/motorhead_django/chatsession/"
        cases = {
            "first page": {},
            "filtered (failed, ns2)": {"sync_state__exact": "failed", "namespace": "ns2"},
            "last page": {"p": str(SESSIONS // 50)},
            "search by message content": {"q": "session-99999 says"},
        }
        print(f"Admin sessions list, {SESSIONS:,} sessions, {SESSIONS * 3:,} messages, PostgreSQL")
        for label, params in cases.items():
            seconds, queries = timed(client, url, params)
            print(f"  {label:<28} {seconds * 1000:8.1f} ms  {queries} queries")


if __name__ == "__main__":
    main()
