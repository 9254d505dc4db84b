"""Embeddings and semantic retrieval against the test server's /v1/embeddings, over real HTTP."""

from __future__ import annotations

import logging
import random

import pytest
from django.db import connection
from rest_framework.test import APIClient

from motorhead_django import embeddings, memory, vectors
from motorhead_django.models import ChatSession, MessageEmbedding
from motorhead_django.testing.llm import embed

from .test_api_compat import alice  # noqa: F401  (fixture)
from .test_api_rest import make_user

KEY = "sk-embeddings-secret-77aa"
WORDS = [
    "apple",
    "banana",
    "cherry",
    "diesel",
    "engine",
    "forest",
    "guitar",
    "harbour",
    "island",
    "jungle",
    "kettle",
    "lemon",
    "marble",
    "needle",
    "orange",
    "piano",
    "quartz",
    "river",
    "saddle",
    "tiger",
    "umbrella",
    "violin",
    "walnut",
    "yacht",
    "zebra",
]


@pytest.fixture(autouse=True)
def _empty_cache():
    embeddings._cache.clear()  # primary keys repeat from test to test


@pytest.fixture
def llm(motorhead_server_factory):
    return motorhead_server_factory(seed=3, llm_api_key=KEY)


def configure(settings, server, **extra):
    settings.MOTORHEAD = {
        "EMBEDDINGS": {"BASE_URL": server.openai_url, "API_KEY": KEY, "MODEL": "e", **extra},
    }


def corpus(count: int, seed: int = 1) -> list[tuple[str, str]]:
    draw = random.Random(seed)
    return [
        (draw.choice(("Human", "AI")), " ".join(draw.choices(WORDS, k=draw.randint(3, 8))))
        for _ in range(count)
    ]


def brute_force(session, text: str, k: int = 10) -> list[int]:
    query = embed(text, seed=3)
    scored = []
    for message in session.messages.all():
        vector = embed(message.content, seed=3)
        scored.append((sum(a * b for a, b in zip(vector, query, strict=True)), message.pk))
    scored.sort(reverse=True)
    return [pk for _, pk in scored[:k]]


@pytest.mark.django_db(transaction=True)
def test_messages_are_embedded_after_the_write_in_batches_once(settings, llm):
    configure(settings, llm, BATCH_SIZE=4)
    session = memory.get_or_create_session("e")
    memory.append_messages(session, corpus(10))
    assert MessageEmbedding.objects.filter(session=session).count() == 10
    assert len(llm.openai.embedding_calls()) == 3  # 4 + 4 + 2
    assert embeddings.embed_pending(session.pk) == 0  # idempotent
    stored = MessageEmbedding.objects.filter(session=session).first()
    assert len(stored.vector) == 64 * 4 and stored.model == "e"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("with_numpy", [True, False])
def test_recall_at_10_is_exact_against_brute_force(settings, llm, monkeypatch, with_numpy):
    configure(settings, llm, BATCH_SIZE=64)
    if not with_numpy:
        monkeypatch.setattr(embeddings, "numpy", None)
    session = memory.get_or_create_session("recall")
    memory.append_messages(session, corpus(100)[:100])
    memory.append_messages(session, corpus(100, seed=2))
    draw = random.Random(9)
    for _ in range(20):
        text = " ".join(draw.choices(WORDS, k=3))
        found = embeddings.search(session, text, limit=10)
        exact = brute_force(session, text)
        got = [m.pk for m, _ in found]
        # Equal scores may be ordered differently: compare the sets, and the distances' order.
        assert set(got) == set(exact) or _ties_only(session, text, got, exact)
        dists = [d for _, d in found]
        assert dists == sorted(dists) and all(0 <= d <= 2 for d in dists)


def _ties_only(session, text, got, exact):
    query = embed(text, seed=3)

    def score(pk):
        vector = embed(session.messages.get(pk=pk).content, seed=3)
        return round(sum(a * b for a, b in zip(vector, query, strict=True)), 5)

    return sorted(map(score, got)) == sorted(map(score, exact))


@pytest.mark.django_db(transaction=True)
def test_the_compatible_and_rest_retrieval_routes_are_semantic(settings, llm, alice):  # noqa: F811
    configure(settings, llm)
    settings.MOTORHEAD["COMPAT_ALLOW_ANONYMOUS"] = False
    alice.add("r", ("Human", "my cat is called Tom"), ("AI", "nice cat"), ("Human", "rain today"))
    found = alice.post("/sessions/r/retrieval", {"text": "my cat is called Tom"}).json()
    assert found[0] == {"role": "Human", "content": "my cat is called Tom", "dist": 0.0}
    assert set(found[0]) == {"role", "content", "dist"} and len(found) == 3
    assert found[1]["content"] == "nice cat" and 0 < found[1]["dist"] < found[2]["dist"]
    ann = make_user("ann")
    session = memory.get_or_create_session("rest", owner=ann)
    memory.append_messages(session, [("Human", "orange tiger"), ("AI", "blue whale")])
    client = APIClient()
    client.force_authenticate(ann)
    url = f"/api/sessions/{session.pk}/retrieval/"
    rest = client.post(url, {"text": "tiger"}, format="json").json()
    assert [r["content"] for r in rest] == ["orange tiger", "blue whale"]


@pytest.mark.django_db(transaction=True)
def test_rest_search_spans_the_callers_sessions_only(settings, llm):
    configure(settings, llm)
    ann, bob = make_user("ann"), make_user("bob")
    mine = memory.get_or_create_session("a1", owner=ann)
    memory.append_messages(mine, [("Human", "zebra walnut yacht")])
    other = memory.get_or_create_session("a2", owner=ann)
    memory.append_messages(other, [("Human", "zebra river")])
    theirs = memory.get_or_create_session("b1", owner=bob)
    memory.append_messages(theirs, [("Human", "zebra walnut yacht")])
    client = APIClient()
    client.force_authenticate(ann)
    found = client.post("/api/search/", {"text": "zebra walnut yacht"}, format="json")
    assert found.status_code == 200, found.content
    body = found.json()
    assert [(r["session_id"], r["content"]) for r in body] == [
        ("a1", "zebra walnut yacht"),
        ("a2", "zebra river"),
    ]
    assert body[0]["dist"] == 0.0 and body[0]["session"] == mine.pk and body[0]["sequence"] == 1
    assert client.post("/api/search/", {}, format="json").status_code == 400
    settings.MOTORHEAD = {}
    refused = client.post("/api/search/", {"text": "x"}, format="json")
    assert refused.status_code == 400 and "EMBEDDINGS" in refused.json()["text"][0]


@pytest.mark.django_db(transaction=True)
def test_a_failing_embeddings_api_never_fails_a_write_or_a_retrieval(settings, llm, caplog):
    configure(settings, llm, RETRIES=1)
    llm.llm_faults.fail_next(2, mode="echo")
    session = memory.get_or_create_session("f")
    with caplog.at_level(logging.WARNING):
        assert len(memory.append_messages(session, [("Human", "tiger piano")])) == 1
    assert not MessageEmbedding.objects.exists()
    assert "left for the next write" in caplog.text and KEY not in caplog.text
    memory.append_messages(session, [("AI", "violin")])
    assert MessageEmbedding.objects.filter(session=session).count() == 2
    llm.llm_faults.fail_next(1, mode="error")
    with caplog.at_level(logging.WARNING):
        found = memory.retrieve(session, "tiger")  # falls back to the word search
    assert [r["content"] for r in found] == ["tiger piano"]


@pytest.mark.django_db(transaction=True)
def test_the_cached_matrix_follows_new_and_deleted_messages(settings, llm):
    configure(settings, llm)
    session = memory.get_or_create_session("cache")
    memory.append_messages(session, [("Human", "apple banana"), ("AI", "diesel engine")])
    assert embeddings.search(session, "diesel")[0][0].content == "diesel engine"
    memory.append_messages(session, [("Human", "diesel truck engine")])  # read incrementally
    assert len(embeddings.search(session, "diesel truck engine")) == 3
    assert embeddings.search(session, "diesel truck engine")[0][0].content == "diesel truck engine"
    session.messages.filter(content="diesel truck engine").delete()  # a reload
    assert [m.content for m, _ in embeddings.search(session, "diesel")][0] == "diesel engine"
    assert len(embeddings.search(session, "diesel")) == 2


# -- pgvector (a PostgreSQL from the pgserver wheel; skipped without it, a failure in CI) ------


def vector_rows() -> int:
    sql = f"SELECT count(*) FROM {vectors.TABLE} WHERE {vectors.COLUMN} IS NOT NULL"
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def test_pgvector_is_used_where_the_database_has_it_and_agrees_with_the_exact_path(
    settings, llm, pgvector_db
):
    configure(settings, llm, BATCH_SIZE=16)
    assert vectors.has_column(connection) and vectors.in_use()
    session = memory.get_or_create_session("pgv")
    memory.append_messages(session, corpus(40))
    assert embeddings.embed_pending(session.pk) == 40
    assert vector_rows() == 40
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [vectors.index_name(64)])
        assert cursor.fetchone() is not None, "the HNSW index of 64 dimensions"
    draw = random.Random(4)
    for _ in range(10):
        text = " ".join(draw.choices(WORDS, k=3))
        found = embeddings.search(session, text)
        settings.MOTORHEAD["EMBEDDINGS"]["STORAGE"] = "portable"
        exact = embeddings.search(session, text)
        settings.MOTORHEAD["EMBEDDINGS"]["STORAGE"] = "auto"
        got, want = [m.pk for m, _ in found], [m.pk for m, _ in exact]
        assert set(got) == set(want) or _ties_only(session, text, got, want)
        assert [d for _, d in found] == pytest.approx([d for _, d in exact], abs=1e-5)
    # Across sessions, as POST /api/search/ does.
    memory.append_messages(other := memory.get_or_create_session("pgv2"), [("Human", "tiger")])
    embeddings.embed_pending(other.pk)
    both = ChatSession.objects.filter(pk__in=[session.pk, other.pk])
    top = embeddings.search_sessions(both, "tiger", limit=3)
    assert top[0][0].content == "tiger" and top[0][1] == 0.0


def test_vectors_stored_before_pgvector_are_backfilled(settings, llm, pgvector_db):
    configure(settings, llm, STORAGE="portable")
    session = memory.get_or_create_session("before")
    memory.append_messages(session, corpus(5))
    embeddings.embed_pending(session.pk)
    assert vector_rows() == 0  # portable: the blob only
    settings.MOTORHEAD["EMBEDDINGS"]["STORAGE"] = "auto"
    memory.append_messages(session, corpus(1, seed=8))
    embeddings.embed_pending(session.pk)  # fills the old rows' column too
    assert vector_rows() == 6
    vectors.uninstall(connection)  # as if 0012 ran without the extension
    assert not vectors.has_column(connection) and not vectors.in_use()
    assert vectors.install(connection)  # what to run once the extension is there
    assert vector_rows() == 6


def seeded_corpus(count: int, dimensions: int, seed: int):
    """Unit vectors around 50 centres: clustered, as text embeddings are."""
    numpy = pytest.importorskip("numpy")
    draw = numpy.random.default_rng(seed)
    centres = draw.normal(size=(50, dimensions))
    points = centres[draw.integers(0, 50, count)] + 0.35 * draw.normal(size=(count, dimensions))
    return (points / numpy.linalg.norm(points, axis=1, keepdims=True)).astype("<f4")


def store_corpus(session, points) -> list[int]:
    from motorhead_django.models import ChatMessage

    rows = ChatMessage.objects.bulk_create(
        ChatMessage(session=session, sequence=n + 1, role="Human", content=f"m{n}")
        for n in range(len(points))
    )
    MessageEmbedding.objects.bulk_create(
        MessageEmbedding(message=row, session=session, vector=point.tobytes(), model="seeded")
        for row, point in zip(rows, points, strict=True)
    )
    if vectors.in_use():
        vectors.store(
            connection, [(row.pk, point) for row, point in zip(rows, points, strict=True)]
        )
    return [row.pk for row in rows]


def brute_force_top(keys, points, query, k=10) -> list[int]:
    scores = points @ query
    return [keys[i] for i in sorted(range(len(keys)), key=lambda i: -scores[i])[:k]]


def test_hnsw_recall_at_10_is_at_least_0_95_and_the_exact_path_is_1(settings, pgvector_db):
    """Issue 17: both storage paths against brute-force cosine on a seeded corpus."""
    settings.MOTORHEAD = {"EMBEDDINGS": {"BASE_URL": "http://127.0.0.1:9/v1", "MODEL": "e"}}
    session = memory.get_or_create_session("seeded")
    points = seeded_corpus(3000, 32, seed=11)
    keys = store_corpus(session, points)
    neighbour = memory.get_or_create_session("neighbour")  # another session in the index
    store_corpus(neighbour, seeded_corpus(1000, 32, seed=12))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE " + vectors.TABLE)
    queries = seeded_corpus(30, 32, seed=13)
    hnsw_recall, exact_recall = [], []
    for query in queries:
        truth = set(brute_force_top(keys, points, query))
        plan = vectors.explain(connection, [session.pk], query, 10)
        assert vectors.index_name(32) in plan, plan  # the HNSW index answered, not a scan
        found = vectors.nearest(connection, [session.pk], None, query, 10)
        hnsw_recall.append(len(truth & {pk for pk, _ in found}) / 10)
        exact = embeddings.nearest(MessageEmbedding.objects.filter(session=session), query, 10)
        exact_recall.append(len(truth & {pk for pk, _ in exact}) / 10)
    assert sum(exact_recall) / len(queries) == 1.0
    assert sum(hnsw_recall) / len(queries) >= 0.95, hnsw_recall


def test_erasure_counts_and_removes_the_pgvector_rows(settings, llm, pgvector_db):
    from motorhead_django import governance

    configure(settings, llm)
    session = memory.get_or_create_session("erase-me")
    memory.append_messages(session, corpus(7))
    embeddings.embed_pending(session.pk)
    assert vector_rows() == 7
    receipt = governance.erase_session(session).receipt
    assert receipt.counts["embeddings"] == 7
    assert vector_rows() == 0 and not MessageEmbedding.objects.exists()


@pytest.mark.django_db
def test_without_the_extension_the_migration_and_the_storage_are_portable(settings, llm):
    """SQLite, and a PostgreSQL without pgvector (this machine's): the migration added no column."""
    if vectors.extension_available(connection):
        pytest.skip("this database has pgvector (the pgvector tests above cover it)")
    configure(settings, llm)
    assert not vectors.has_column(connection) and not vectors.in_use()
    assert vectors.install(connection) is False
    session = memory.get_or_create_session("portable")
    memory.append_messages(session, [("Human", "tiger")])
    embeddings.embed_pending(session.pk)
    assert embeddings.search(session, "tiger")[0][1] == 0.0


@pytest.mark.django_db
def test_the_storage_setting_is_checked(settings, llm, monkeypatch):
    from motorhead_django.checks import check_pgvector_database, check_vector_storage

    configure(settings, llm, STORAGE="faiss")
    assert [e.id for e in check_vector_storage()] == ["motorhead_django.E050"]
    configure(settings, llm, STORAGE="pgvector")
    monkeypatch.setattr(vectors, "package_available", lambda: False)
    ids = [e.id for e in check_vector_storage()]
    assert ids.count("motorhead_django.E051") == (2 if connection.vendor != "postgresql" else 1)
    configure(settings, llm, STORAGE="auto")
    assert check_vector_storage() == [] and check_pgvector_database(databases=["default"]) == []
    if connection.vendor == "postgresql" and not vectors.extension_available(connection):
        configure(settings, llm, STORAGE="pgvector")
        errors = check_pgvector_database(databases=["default"])
        assert [e.id for e in errors] == ["motorhead_django.E052"]


def test_requested_pgvector_on_a_server_that_has_it_passes_the_checks(settings, llm, pgvector_db):
    from motorhead_django.checks import check_pgvector_database, check_vector_storage

    configure(settings, llm, STORAGE="pgvector")
    assert check_vector_storage() == []
    assert check_pgvector_database(databases=["default"]) == []
    vectors.uninstall(connection)
    assert [e.id for e in check_pgvector_database(databases=["default"])] == [
        "motorhead_django.W050"
    ]
