"""The built-in summariser against the test server's /v1/chat/completions, over real HTTP."""

from __future__ import annotations

import logging
import random

import pytest
from django.db import connection

from motorhead_django import memory, redaction, summaries
from motorhead_django.models import ChatSession, SummaryVersion
from motorhead_django.testing.llm import parse_summary_prompt

KEY = "sk-summary-secret-4f9a1c"


@pytest.fixture
def llm(motorhead_server_factory):
    return motorhead_server_factory(seed=17, llm_api_key=KEY)


def configure(settings, server, window=4, **extra):
    settings.MOTORHEAD = {
        "WINDOW_SIZE": window,
        "SUMMARIZER": {"BASE_URL": server.openai_url, "API_KEY": KEY, "MODEL": "m", **extra},
    }


def lines(session):
    return [f"{m.role}: {m.content}" for m in session.messages.order_by("sequence")]


def chain_deltas(session_pk):
    """The lines each summary version added to the previous one, oldest version first."""
    previous, added = "", []
    for version in SummaryVersion.objects.filter(session_id=session_pk).order_by("pk"):
        text = version.context or ""
        assert text.startswith(previous), "a version does not build on the one before"
        added.extend(filter(None, text[len(previous) :].split("\n")))
        previous = text
    return added


@pytest.mark.django_db(transaction=True)
def test_messages_that_leave_the_window_are_folded_in_once_and_in_order(settings, llm):
    configure(settings, llm)
    session = memory.get_or_create_session("s")
    memory.append_messages(session, [("Human", f"m{n}") for n in range(1, 6)])
    session.refresh_from_db()
    assert session.context is None and session.summarized_through == 0  # all in the window (5)
    memory.append_messages(session, [("Human", "m6"), ("AI", "m7")])
    session.refresh_from_db()
    assert session.context == "Human: m1\nHuman: m2"
    assert session.summarized_through == 2
    memory.append_messages(session, [("Human", "m8")])
    session.refresh_from_db()
    assert session.context == "Human: m1\nHuman: m2\nHuman: m3"
    assert session.tokens == llm.openai.total_tokens() > 0
    assert [v.through_sequence for v in session.summaries.order_by("pk")] == [2, 3]
    assert session.summaries.order_by("pk").last().tokens == session.tokens
    # The request is Motorhead's: the prompt with the previous summary, a Bearer key.
    prompt = llm.openai.chat_calls()[-1].request["messages"][0]["content"]
    assert parse_summary_prompt(prompt) == ("Human: m1\nHuman: m2", ["Human: m3"])
    assert llm.requests[-1].headers["Authorization"] == f"Bearer {KEY}"
    assert llm.openai.chat_calls()[-1].request["max_tokens"] == 512
    # The memory routes show it.
    assert memory.get_memory(session).context == session.context


@pytest.mark.django_db(transaction=True)
def test_a_large_write_is_summarised_in_token_batches_none_dropped(settings, llm):
    configure(settings, llm, BATCH_TOKENS=12)
    session = memory.get_or_create_session("big")
    memory.append_messages(session, [("Human", f"message {n:02}") for n in range(40)])
    session.refresh_from_db()
    assert session.summarized_through == 35
    assert session.context.split("\n") == lines(session)[:35]
    # Each line is 5 tokens (about four characters a token): two lines a call.
    assert len(llm.openai.chat_calls()) == 18
    assert chain_deltas(session.pk) == lines(session)[:35]


@pytest.mark.django_db(transaction=True)
def test_a_failing_llm_never_fails_a_write_and_nothing_is_skipped(settings, llm, caplog):
    configure(settings, llm, RETRIES=2)
    llm.llm_faults.fail_next(3, mode="echo")  # the first try and both retries; echoes the key
    session = memory.get_or_create_session("f")
    with caplog.at_level(logging.WARNING):
        written = memory.append_messages(session, [("Human", f"m{n}") for n in range(7)])
    assert len(written) == 7
    session.refresh_from_db()
    assert session.context is None and session.summarized_through == 0 and session.tokens == 0
    assert "left for the next write" in caplog.text and KEY not in caplog.text
    memory.append_messages(session, [("AI", "m7")])
    session.refresh_from_db()
    assert session.context.split("\n") == lines(session)[:3]


@pytest.mark.django_db(transaction=True)
def test_a_rejected_key_is_not_retried(settings, llm, caplog):
    configure(settings, llm)
    settings.MOTORHEAD["SUMMARIZER"]["API_KEY"] = "sk-wrong-key-0000000"
    session = memory.get_or_create_session("k")
    with caplog.at_level(logging.WARNING):
        memory.append_messages(session, [("Human", f"m{n}") for n in range(8)])
    assert len(llm.requests_for("POST")) == 1  # a 401 is not transient
    assert "401" in caplog.text and "sk-wrong-key-0000000" not in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_context_set_meanwhile_is_built_upon(settings, llm):
    configure(settings, llm)
    session = memory.get_or_create_session("c")
    memory.append_messages(session, [("Human", f"m{n}") for n in range(6)], context="mine")
    session.refresh_from_db()
    assert session.context == "mine\nHuman: m0"


@pytest.mark.django_db(transaction=True)
def test_with_a_server_motorhead_owns_the_context_unless_told(settings, llm, no_autopush):
    configure(settings, llm)
    settings.MOTORHEAD["URL"] = "http://127.0.0.1:9"
    session = memory.get_or_create_session("o")
    memory.append_messages(session, [("Human", f"m{n}") for n in range(8)])
    assert ChatSession.objects.get(pk=session.pk).context is None
    settings.MOTORHEAD["CONTEXT_OWNER"] = "local"
    memory.append_messages(session, [("Human", "m8")])
    assert ChatSession.objects.get(pk=session.pk).summarized_through == 4


@pytest.mark.django_db(transaction=True)
def test_exactly_once_under_failures_slowness_and_concurrent_writes(settings, llm, caplog):
    """3 sessions x 100 messages in small batches; the LLM fails 20% of calls and is slow."""
    configure(settings, llm, window=12, BATCH_TOKENS=40, RETRIES=12)
    faults = llm.llm_faults
    faults.fail_rate, faults.fail_mode, faults.latency = 0.2, "mixed", 0.02
    faults.fail_next(2, mode="echo", after=5)
    draw = random.Random(5)
    sessions = [memory.get_or_create_session(f"x{n}") for n in range(3)]
    written = {s.pk: 0 for s in sessions}
    base_model = llm.openai.model
    extra_writes = []

    def model_that_races_a_write(messages):
        # While a summary is being made, another write arrives to the same session.
        if draw.random() < 0.3:
            target = draw.choice(sessions)
            if written[target.pk] < 100:
                written[target.pk] += 1
                content = f"{target.session_id}-{written[target.pk]}"
                try:
                    memory.append_messages(target, [("AI", content)])
                finally:
                    connection.close()  # the server's handler thread
                extra_writes.append(target.pk)
        return base_model(messages)

    llm.openai.model = model_that_races_a_write
    with caplog.at_level(logging.INFO):
        while any(count < 100 for count in written.values()):
            session = draw.choice([s for s in sessions if written[s.pk] < 100])
            size = min(draw.randint(1, 3), 100 - written[session.pk])
            batch = [
                ("Human", f"{session.session_id}-{written[session.pk] + k + 1}")
                for k in range(size)
            ]
            written[session.pk] += size
            memory.append_messages(session, batch)
    # What a failed last call left behind is picked up by the next run, like the next write.
    for session in sessions:
        summaries.summarize_pending(session.pk)
    assert extra_writes, "no write raced a summary"
    tokens = 0
    for session in sessions:
        session.refresh_from_db()
        assert session.last_sequence == 100
        left = lines(session)[: 100 - 13]
        assert session.summarized_through == 87
        assert chain_deltas(session.pk) == left  # exactly once, in order
        assert session.context.split("\n") == left
        tokens += session.tokens
    assert tokens == llm.openai.total_tokens()
    assert any(r.fault for r in llm.requests) and KEY not in caplog.text


def check_ids(settings, **motorhead):
    from django.core import checks

    settings.MOTORHEAD = motorhead
    return sorted(m.id for m in checks.run_checks() if m.id.startswith("motorhead_django"))


GOOD = {"BASE_URL": "https://api.openai.com/v1", "API_KEY": "sk-x", "MODEL": "gpt-4o-mini"}


@pytest.mark.parametrize(
    "value",
    [
        {"BASE_URL": "https://x/v1"},  # no MODEL
        {**GOOD, "BASE_URL": "ftp://x"},
        {**GOOD, "MAX_TOKEN": 5},  # a typo
        {**GOOD, "BATCH_TOKENS": 0},
        {**GOOD, "TIMEOUT": "soon"},
        {**GOOD, "API_KEY": 5},
    ],
)
def test_a_bad_summarizer_dict_is_e020_and_embeddings_e021(settings, value):
    assert check_ids(settings, SUMMARIZER=value) == ["motorhead_django.E020"]
    assert check_ids(settings, EMBEDDINGS=value) == ["motorhead_django.E021"]


def test_good_dicts_are_clean_and_other_ids(settings):
    assert check_ids(settings, SUMMARIZER=GOOD, EMBEDDINGS=GOOD) == []
    assert check_ids(settings, EMBEDDINGS="x") == ["motorhead_django.E021"]
    assert check_ids(settings, CONTEXT_OWNER="both") == ["motorhead_django.E022"]
    plain = {**GOOD, "BASE_URL": "http://llm.example.com/v1"}
    assert check_ids(settings, SUMMARIZER=plain) == ["motorhead_django.W020"]
    loopback = {**GOOD, "BASE_URL": "http://127.0.0.1:11434/v1"}
    assert check_ids(settings, SUMMARIZER=loopback) == []


def test_settings_are_typed_with_motorheads_defaults(settings):
    from motorhead_django.conf import motorhead_settings

    settings.MOTORHEAD = {"SUMMARIZER": {**GOOD, "BASE_URL": "https://x/v1/"}}
    config = motorhead_settings.BUILTIN_SUMMARIZER
    assert config is not None and config.BASE_URL == "https://x/v1"
    assert (config.MAX_TOKENS, config.BATCH_TOKENS) == (512, 3354)
    assert motorhead_settings.SUMMARIZER is None  # not a dotted path
    assert motorhead_settings.SUMMARIZES_LOCALLY and motorhead_settings.CONTEXT_OWNER == "server"
    assert motorhead_settings.EMBEDDINGS is None


def test_the_llm_keys_are_secrets_to_redact(settings):
    settings.MOTORHEAD = {
        "SUMMARIZER": {**GOOD, "API_KEY": "sk-summariser-key-1234"},
        "EMBEDDINGS": {**GOOD, "API_KEY": "sk-embeddings-key-5678"},
    }
    text = redaction.redact("sk-summariser-key-1234 and sk-embeddings-key-5678")
    assert "sk-" not in text


@pytest.mark.django_db(transaction=True)
def test_the_command_adopts_a_servers_summary_and_catches_up(settings, llm, monkeypatch):
    from io import StringIO

    from django.core.management import call_command

    # History written before the summariser was on (imported from a Motorhead server).
    old = memory.get_or_create_session("old")
    memory.append_messages(old, [("Human", f"m{n}") for n in range(10)], context="server's")
    fresh = memory.get_or_create_session("fresh")
    memory.append_messages(fresh, [("Human", f"f{n}") for n in range(7)])
    configure(settings, llm)
    out = StringIO()
    call_command("motorhead_summarize", "--adopt", stdout=out)
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.context == "server's" and old.summarized_through == 5  # nothing summarised twice
    assert fresh.context == "Human: f0\nHuman: f1" and fresh.summarized_through == 2
    assert "1 session(s) adopted" in out.getvalue() and "2 message(s) summarised in 1" in (
        out.getvalue()
    )
    settings.MOTORHEAD = {}
    with pytest.raises(Exception, match="Nothing to do"):
        call_command("motorhead_summarize")
