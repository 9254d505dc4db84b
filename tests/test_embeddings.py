"""Embeddings and semantic retrieval against the test server's /v1/embeddings, over real HTTP."""

from __future__ import annotations

import logging
import random

import pytest
from rest_framework.test import APIClient

from motorhead_django import embeddings, memory
from motorhead_django.models import MessageEmbedding
from motorhead_django.testing.llm import embed

from .test_api_compat import alice  # noqa: F401  (fixture)
from .test_api_rest import make_user

KEY = "sk-embeddings-secret-77aa"
WORDS = (
    "apple banana cherry diesel engine forest guitar harbour island jungle kettle lemon "
    "marble needle orange piano quartz river saddle tiger umbrella violin walnut yacht zebra"
).split()


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
