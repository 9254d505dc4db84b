"""Search and the session list at a million messages: REST, admin, retrieval, beside a raw scan.

    .venv/bin/python bench/search.py                      # 1,000,000 messages, 10,000 sessions
    .venv/bin/python bench/search.py --messages 100000    # a smaller corpus, same shape

PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test); it creates
test_motorhead_bench_search (``--keep`` leaves it for a second run, which reuses a corpus
of the same size). 10,000 sessions of one user: the first holds a tenth of the messages
(a long history), the others share the rest. Messages are about fifteen words from a
Zipf-like vocabulary, loaded with COPY, with three planted terms: one in 20 messages
("rare"), one in a thousandth ("medium") and one in a tenth ("common").

Then, through Django's test client (no HTTP), 20 requests per case, p50 and p95:
the REST list plain, ordered by message count, and with ``?search=``; the admin's
changelist with a search; retrieval without embeddings in a 90-message and in the
long session, without and with a full-text expression index; a raw ``ILIKE`` scan
(index scans off) as the floor of an unindexed search; the time to build each index,
its size, and what it adds to appending messages.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from _setup import setup_django  # noqa: E402

setup_django()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from motorhead_django import memory, search  # noqa: E402
from motorhead_django.models import ChatMessage, ChatSession, server_id  # noqa: E402

SESSIONS = 10_000
TERMS = {"rare": "zanzibar", "medium": "quokka", "common": "invoice"}
# What the trigram step of 0001_initial creates, rebuilt after the load as on a live table.
TRIGRAM_SQL = (
    f"CREATE INDEX IF NOT EXISTS {search.CONTENT_INDEX} ON motorhead_django_chatmessage "
    "USING gin (UPPER(content) gin_trgm_ops)"
)
FTS_INDEX = "bench_message_content_fts"
FTS_SQL = (
    f"CREATE INDEX {FTS_INDEX} ON motorhead_django_chatmessage USING gin "
    "(to_tsvector('english'::regconfig, COALESCE(content, '')))"
)


def words(rng: random.Random, n: int) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "pu", "der", "an", "ol"]
    vocabulary = {"".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(n * 2)}
    return sorted(vocabulary)[:n]


def fill(total: int) -> ChatSession:
    rng = random.Random(21)
    vocabulary = words(rng, 5_000)
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]  # Zipf-like
    user = get_user_model().objects.create_user("reader")
    long_count = total // 10
    per_session = (total - long_count) // (SESSIONS - 1)
    sessions = ChatSession.objects.bulk_create(
        ChatSession(
            session_id=f"session-{n}",
            remote_id=server_id(user.pk, f"session-{n}"),
            owner=user,
            sync_state="synced",
            last_sequence=long_count if n == 0 else per_session,
        )
        for n in range(SESSIONS)
    )
    now = datetime.now(UTC).isoformat()
    planted = {"rare": 20, "medium": total // 1000, "common": total // 10}
    chosen = {kind: set(rng.sample(range(total), k)) for kind, k in planted.items()}
    started = time.perf_counter()
    row = 0
    with connection.cursor() as cursor:
        copy_sql = (
            "COPY motorhead_django_chatmessage (session_id, sequence, role, content, created_at,"
            " origin, sync_state) FROM STDIN"
        )
        with cursor.cursor.copy(copy_sql) as copy:
            for index, session in enumerate(sessions):
                count = long_count if index == 0 else per_session
                buffer = io.StringIO()
                for sequence in range(1, count + 1):
                    text = rng.choices(vocabulary, weights, k=rng.randint(8, 22))
                    for kind, rows in chosen.items():
                        if row in rows:
                            text.insert(rng.randrange(len(text)), TERMS[kind])
                    row += 1
                    content = " ".join(text).capitalize() + "."
                    role = "Human" if sequence % 2 else "AI"
                    buffer.write(
                        f"{session.pk}\t{sequence}\t{role}\t{content}\t{now}\tlocal\tsynced\n"
                    )
                copy.write(buffer.getvalue())
    print(f"  loaded {row:,} messages with COPY in {time.perf_counter() - started:.1f} s")
    return sessions[0]


def timed(run: Callable[[], object], rounds: int = 20) -> tuple[float, float, int]:
    """p50 and p95 in ms, and the queries of one run."""
    run()  # warm: the user's permissions, the plan cache, the pages read
    queries: list[str] = []
    with connection.execute_wrapper(
        lambda execute, sql, *args: queries.append(sql) or execute(sql, *args)
    ):
        run()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], len(queries)


def get(client: Client, url: str, params: dict[str, str]) -> Callable[[], object]:
    def run() -> object:
        response = client.get(url, params)
        assert response.status_code == 200, (response.status_code, response.content[:300])
        return response

    return run


def sql(statement: str) -> float:
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(statement)
    return time.perf_counter() - started


def index_size(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_relation_size(%s::regclass))", [name])
        return str(cursor.fetchone()[0])


def appends(session: ChatSession, n: int = 500) -> float:
    """ms per ``append_messages`` of two messages, each in its own transaction."""
    started = time.perf_counter()
    for k in range(n):
        memory.append_messages(session, [("Human", f"a quokka question {k}"), ("AI", "answer")])
    return (time.perf_counter() - started) * 1000 / n


def row(label: str, figures: tuple[float, float, int]) -> None:
    p50, p95, queries = figures
    print(f"  {label:<46} p50 {p50:8.1f} ms  p95 {p95:8.1f} ms  {queries} queries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="leave the database for a rerun")
    args = parser.parse_args()
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["*"]
    setup_test_environment()
    settings.DATABASES["default"]["NAME"] = "motorhead_bench_search"
    old_name = connection.creation.create_test_db(verbosity=0, keepdb=True)
    try:
        run(args.messages)
    finally:
        if not args.keep:
            connection.creation.destroy_test_db(old_name, verbosity=0)


def run(total: int) -> None:
    print(f"Search at {total:,} messages in {SESSIONS:,} sessions, PostgreSQL")
    if ChatMessage.objects.count() != total or ChatSession.objects.count() != SESSIONS:
        print("  loading the corpus (the index is built after the load, as on a live table)")
        ChatMessage.objects.all().delete()
        ChatSession.objects.all().delete()
        get_user_model().objects.all().delete()
        sql(f"DROP INDEX IF EXISTS {search.CONTENT_INDEX}")
        long = fill(total)
        seconds = sql(TRIGRAM_SQL)
        print(f"  trigram index built in {seconds:.1f} s, {index_size(search.CONTENT_INDEX)}")
        sql("VACUUM ANALYZE motorhead_django_chatmessage")
        sql("VACUUM ANALYZE motorhead_django_chatsession")
    else:
        print("  reusing the corpus of an earlier --keep run")
        long = ChatSession.objects.get(session_id="session-0")
    typical = ChatSession.objects.get(session_id="session-1")
    reader = get_user_model().objects.get(username="reader")
    admin = get_user_model().objects.create_superuser("bench-admin", "a@example.com", "x")
    try:
        measure(reader, admin, long, typical)
    finally:
        admin.delete()


def measure(reader, admin, long: ChatSession, typical: ChatSession) -> None:  # type: ignore[no-untyped-def]
    api = APIClient()
    api.force_authenticate(reader)
    browser = Client()
    browser.force_login(admin)
    rest, changelist = "/api/sessions/", "/admin/motorhead_django/chatsession/"

    print("REST session list")
    row("plain (newest first, page of 50)", timed(get(api, rest, {})))
    row(
        "ordered by -message_count (every session's)",
        timed(get(api, rest, {"ordering": "-message_count"}), 5),
    )
    for kind, term in TERMS.items():
        row(f"?search= {kind} ({term})", timed(get(api, rest, {"search": term})))
    row("?search= a session id (session-4711)", timed(get(api, rest, {"search": "session-4711"})))

    print("Admin changelist")
    row("plain", timed(get(browser, changelist, {}), 10))
    for kind, term in TERMS.items():
        row(f"?q= {kind} ({term})", timed(get(browser, changelist, {"q": term}), 10))

    print("Raw scan, no index (SELECT DISTINCT session_id ... ILIKE)")
    for kind, term in TERMS.items():
        with connection.cursor() as cursor:
            cursor.execute("SET enable_bitmapscan = off")
            try:
                row(f"ILIKE {kind}", timed(lambda t=term: raw_ilike(t), 3))
            finally:
                cursor.execute("RESET enable_bitmapscan")

    print("Retrieval without embeddings (memory.search)")
    row(
        f"typical session ({typical.last_sequence} messages), medium term",
        timed(lambda: memory.search(typical, TERMS["medium"])),
    )
    row(
        f"long session ({long.last_sequence:,} messages), rare term",
        timed(lambda: memory.search(long, TERMS["rare"]), 5),
    )
    row("long session, common term", timed(lambda: memory.search(long, TERMS["common"]), 5))
    seconds = sql(FTS_SQL)
    sql("ANALYZE motorhead_django_chatmessage")
    print(f"  with a full-text index too (built in {seconds:.1f} s, {index_size(FTS_INDEX)}):")
    row("typical session, medium term", timed(lambda: memory.search(typical, TERMS["medium"])))
    row("long session, rare term", timed(lambda: memory.search(long, TERMS["rare"]), 5))
    row("long session, common term", timed(lambda: memory.search(long, TERMS["common"]), 5))

    print("Writes: append_messages of 2 messages, ms each (500 calls)")
    original = typical.last_sequence
    print(f"  with the trigram and the full-text index   {appends(typical):6.2f} ms")
    sql(f"DROP INDEX {FTS_INDEX}")
    print(f"  with the trigram index (what 0013 creates) {appends(typical):6.2f} ms")
    sql(f"DROP INDEX {search.CONTENT_INDEX}")
    print(f"  with neither                               {appends(typical):6.2f} ms")
    sql(TRIGRAM_SQL)
    sql("ANALYZE motorhead_django_chatmessage")  # the expression's statistics, as 0013 does
    # The corpus stays the same size for a --keep rerun.
    ChatMessage.objects.filter(session=typical, sequence__gt=original).delete()
    ChatSession.objects.filter(pk=typical.pk).update(last_sequence=original)


def raw_ilike(term: str) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT session_id FROM motorhead_django_chatmessage WHERE content ILIKE %s",
            [f"%{term}%"],
        )
        return [r[0] for r in cursor.fetchall()]


if __name__ == "__main__":
    main()
