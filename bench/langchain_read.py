"""Reading a prompt's window: our LangChain history beside SQLChatMessageHistory.

    .venv/bin/python bench/langchain_read.py

Both on the same PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test;
it creates and drops test_motorhead_bench_lc). For sessions of 10, 1,000 and 100,000
messages it times reading the newest 12 messages, the way a chain builds its prompt:
``DjangoChatMessageHistory(window=12).messages`` (one indexed query) against
``SQLChatMessageHistory.messages[-12:]`` (its only read: every message of the
session). Prints the best of several runs for each, and the ratio.
"""

from __future__ import annotations

import time
import warnings

from _setup import own_database, setup_django  # noqa: E402

warnings.filterwarnings("ignore")
setup_django()

from django.db import connection  # noqa: E402
from langchain_community.chat_message_histories import SQLChatMessageHistory  # noqa: E402

from motorhead_django.langchain import DjangoChatMessageHistory  # noqa: E402
from motorhead_django.models import ChatMessage  # noqa: E402

SIZES = (10, 1_000, 100_000)
WINDOW = 12


def best_of(runs: int, read) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        read()
        timings.append(time.perf_counter() - started)
    return min(timings)


def fill_ours(size: int) -> DjangoChatMessageHistory:
    history = DjangoChatMessageHistory(f"bench-{size}", window=WINDOW)
    session = history.session
    for start in range(0, size, 10_000):
        ChatMessage.objects.bulk_create(
            ChatMessage(
                session=session,
                sequence=n,
                role="Human",
                content=f"message {n}",
                sync_state="synced",
            )
            for n in range(start + 1, min(start + 10_000, size) + 1)
        )
    session.last_sequence = size
    session.save(update_fields=["last_sequence"])
    return history


def fill_theirs(size: int, url: str) -> SQLChatMessageHistory:
    history = SQLChatMessageHistory(session_id=f"bench-{size}", connection=url)
    with connection.cursor() as cursor:
        # The rows its DefaultMessageConverter writes, inserted in bulk.
        cursor.execute(
            "INSERT INTO message_store (session_id, message) "
            "SELECT %s, json_build_object('type', 'human', 'data', "
            "json_build_object('content', 'message ' || g, 'type', 'human'))::text "
            "FROM generate_series(1, %s) AS g",
            [f"bench-{size}", size],
        )
    return history


def main() -> None:
    with own_database("motorhead_bench_lc") as name:
        read_windows(name)


def read_windows(name: str) -> None:
    db = connection.settings_dict
    url = (
        f"postgresql+psycopg://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{name}"
    )
    engines = []
    try:
        print(f"Reading the newest {WINDOW} messages, PostgreSQL ({name}), best of runs")
        print(f"{'messages':>10} {'ours':>12} {'SQLChatMessageHistory':>24} {'ratio':>8}")
        for size in SIZES:
            ours, theirs = fill_ours(size), fill_theirs(size, url)
            engines.append(theirs.engine)
            assert [m.content for m in ours.messages] == [
                m.content for m in theirs.messages[-WINDOW:]
            ]
            runs = 20 if size < 100_000 else 5
            ours_time = best_of(runs, lambda ours=ours: ours.messages)
            theirs_time = best_of(runs, lambda theirs=theirs: theirs.messages[-WINDOW:])
            print(
                f"{size:>10,} {ours_time * 1000:>10.2f}ms {theirs_time * 1000:>22.2f}ms "
                f"{theirs_time / ours_time:>7.0f}x"
            )
    finally:
        for engine in engines:
            engine.dispose()  # its pooled connection would keep the database open


if __name__ == "__main__":
    main()
