"""motorhead_django.search: one meaning on SQLite and PostgreSQL, its indexes, the REST list."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from motorhead_django import memory, search
from motorhead_django.models import ChatMessage, ChatSession

pytestmark = pytest.mark.django_db

API = "/api"

# Case, non-ASCII letters (one upper-case character each, and ß, which has none),
# and the characters LIKE treats as wildcards or escapes.
CORPUS = {
    "plain": ["The quick brown fox", "jumps over the lazy dog"],
    "accents": ["Ünïcödé everywhere", "CAFÉ au lait", "crème brûlée"],
    "greek": ["ΣΟΦΊΑ and σοφία", "λόγος"],
    "eszett": ["Straße", "STRASSE"],
    "percent": ["100% sure", "50 percent"],
    "underscore": ["snake_case_name", "snakeXcase"],
    "backslash": [r"C:\temp\new", "C:/temp/new"],
}
QUERIES = [
    "quick", "QUICK", "Quick Brown", "ünïcödé", "ÜNÏCÖDÉ", "café", "CRÈME", "σοφία", "ΣΟΦΊΑ",
    "straße", "STRASSE", "ss", "100%", "%", "0%", "_", "e_c", "snake_case", r"\temp", "\\", "x",
    "nothing like it", "session-accents", "SESSION-GREEK",
]  # fmt: skip


def oracle(text: str, *, ids: bool = True) -> set[str]:
    """Which sessions hold ``text`` (in a message, or in the id), by Python: the meaning
    both databases must have."""
    needle = search.fold(text) or ""
    return {
        f"session-{name}"
        for name, contents in CORPUS.items()
        for haystack in ([f"session-{name}"] if ids else []) + contents
        if needle in (search.fold(haystack) or "")
    }


@pytest.fixture
def corpus(django_user_model) -> dict[str, ChatSession]:
    owner = django_user_model.objects.create(username="reader")
    sessions = {}
    for name, contents in CORPUS.items():
        sessions[name] = memory.get_or_create_session(f"session-{name}", owner=owner)
        memory.append_messages(sessions[name], [("Human", c) for c in contents])
    return sessions


def test_fold_upper_cases_one_character_at_a_time():
    assert search.fold("Straße ǆ ünï σς") == "STRAßE Ǆ ÜNÏ ΣΣ"
    assert search.fold(None) is None


@pytest.mark.parametrize("text", QUERIES)
def test_messages_containing_has_the_same_meaning_on_every_database(corpus, text):
    found = search.messages_containing(text).values_list("session__session_id", flat=True)
    assert set(found) == oracle(text, ids=False)


def test_the_rest_search_agrees_with_the_oracle(corpus):
    api = APIClient()
    api.force_authenticate(corpus["plain"].owner)
    for text in QUERIES:
        response = api.get(f"{API}/sessions/", {"search": text, "page_size": 50})
        assert response.status_code == 200, response.content
        found = {s["session_id"] for s in response.json()["results"]}
        assert found == oracle(text), text
        assert response.json()["count"] == len(found)


def test_the_admin_search_agrees_with_the_oracle_word_by_word(corpus, admin_client):
    url = reverse("admin:motorhead_django_chatsession_changelist")

    def found(q: str) -> set[str]:
        response = admin_client.get(url, {"q": q})
        assert response.status_code == 200
        return {s.session_id for s in response.context["cl"].result_list}

    for text in QUERIES:
        if " " not in text:
            assert found(text) == oracle(text), text
    # Every word somewhere (Django's rule); a quoted phrase as one.
    assert found("quick lazy") == {"session-plain"}
    assert found("quick café") == set()
    assert found('"brown fox"') == {"session-plain"}
    assert found('"fox brown"') == set()
    # The owner's username is searched too; a session without an owner is no match for it.
    ChatSession.objects.create(session_id="ownerless")
    assert found("reader") == {f"session-{n}" for n in CORPUS}
    assert found("") >= {f"session-{n}" for n in CORPUS} | {"ownerless"}


def test_the_admin_search_runs_a_constant_number_of_queries(corpus, admin_client):
    url = reverse("admin:motorhead_django_chatsession_changelist")
    admin_client.get(url, {"q": "quick"})
    with CaptureQueriesContext(connection) as one_word:
        admin_client.get(url, {"q": "quick"})
    with CaptureQueriesContext(connection) as three_words:
        admin_client.get(url, {"q": "quick brown fox"})
    assert len(one_word) == len(three_words)
    # No join of messages into the list (the pattern that needed a DISTINCT).
    page = [
        q["sql"]
        for q in three_words
        if q["sql"].startswith('SELECT "motorhead_django_chatsession"."id"')
    ]
    assert len(page) == 1
    outer_from = page[0].split(" FROM ", 1)[1].split(" WHERE ", 1)[0]
    assert ChatMessage._meta.db_table not in outer_from


def test_word_search_in_a_session_folds_non_ascii_case_on_every_database(corpus):
    found = memory.search(corpus["accents"], "ÜNÏCÖDÉ café")
    assert {m.content for m, _ in found} == {"Ünïcödé everywhere", "CAFÉ au lait"}


# -- the REST list: figures for the page only ---------------------------------------


def test_the_list_reads_message_figures_for_its_page_only(corpus):
    api = APIClient()
    api.force_authenticate(corpus["plain"].owner)
    api.get(f"{API}/sessions/")  # the user's permissions, read once and cached
    with CaptureQueriesContext(connection) as queries:
        listed = api.get(f"{API}/sessions/", {"page_size": 3}).json()
    # The count, the page, and one grouped query for the page's figures.
    assert len(queries) == 3, [q["sql"] for q in queries]
    table = ChatMessage._meta.db_table
    touching_messages = [q["sql"] for q in queries if table in q["sql"]]
    assert len(touching_messages) == 1 and " IN (" in touching_messages[0]
    # The same figures as the session's own page, which counts with a join.
    for entry in listed["results"]:
        detail = api.get(f"{API}/sessions/{entry['id']}/").json()
        assert (entry["message_count"], entry["last_activity"]) == (
            detail["message_count"],
            detail["last_activity"],
        )
    assert len(listed["results"]) == 3 and listed["count"] == len(CORPUS)


def test_an_empty_session_lists_with_no_messages_and_no_activity(django_user_model):
    owner = django_user_model.objects.create(username="empty")
    memory.get_or_create_session("empty", owner=owner)
    api = APIClient()
    api.force_authenticate(owner)
    (entry,) = api.get(f"{API}/sessions/").json()["results"]
    assert entry["message_count"] == 0 and entry["last_activity"] is None


def test_ordering_by_message_figures_still_orders_every_session(corpus):
    api = APIClient()
    api.force_authenticate(corpus["plain"].owner)
    memory.append_messages(corpus["greek"], [("AI", "ένα"), ("AI", "δύο")])
    ids = [
        s["session_id"]
        for s in api.get(f"{API}/sessions/", {"ordering": "-message_count"}).json()["results"]
    ]
    assert ids[0] == "session-greek"


# -- PostgreSQL: the trigram indexes serve the queries ------------------------------


def explain(sql: str, params: tuple) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SET LOCAL enable_seqscan = off"
        )  # a test table is small: no index wins by cost
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_migration_creates_the_trigram_indexes_on_postgresql_only():
    with connection.cursor() as cursor:
        names = {
            i["name"] if isinstance(i, dict) else i
            for i in connection.introspection.get_constraints(cursor, ChatMessage._meta.db_table)
        }
        names |= set(connection.introspection.get_constraints(cursor, ChatSession._meta.db_table))
    present = {search.CONTENT_INDEX, search.SESSION_ID_INDEX} & names
    expected = (
        {search.CONTENT_INDEX, search.SESSION_ID_INDEX}
        if connection.vendor == "postgresql"
        else set()
    )
    assert present == expected


def test_the_search_queries_use_the_trigram_indexes(postgres, corpus):
    query = search.messages_containing("quick").order_by().query
    sql, params = query.sql_with_params()
    assert 'UPPER("motorhead_django_chatmessage"."content"::text) LIKE UPPER(' in sql
    assert search.CONTENT_INDEX in explain(sql, params)
    listed = search.sessions_matching(ChatSession.objects.all(), "quick")
    sql, params = listed.query.sql_with_params()
    plan = explain(sql, params)
    assert search.CONTENT_INDEX in plan and search.SESSION_ID_INDEX in plan
