"""The test server's OpenAI-compatible /v1 routes, over real HTTP on loopback."""

from __future__ import annotations

import math

import pytest
import requests

from motorhead_django.testing.llm import embed, parse_summary_prompt

PROMPT = (
    "Progressively summarize...\n\nEXAMPLE\nCurrent summary:\nexample\n\n"
    "New lines of conversation:\nHuman: x\n\nNew summary:\nexample two\nEND OF EXAMPLE\n\n"
    "Current summary:\n{previous}\n\nNew lines of conversation:\n{lines}\n\nNew summary:"
)


def chat(server, content: str, **extra) -> requests.Response:
    return requests.post(
        f"{server.openai_url}/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": content}], **extra},
        headers={"Authorization": "Bearer sk-test"},
        timeout=5,
    )


def test_a_summary_prompt_is_answered_with_the_previous_summary_and_the_new_lines(
    motorhead_server,
):
    answer = chat(motorhead_server, PROMPT.format(previous="NONE", lines="Human: hi\nAI: hello"))
    body = answer.json()
    assert answer.status_code == 200
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Human: hi\nAI: hello"}
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    again = chat(motorhead_server, PROMPT.format(previous="Human: hi\nAI: hello", lines="Human: q"))
    assert again.json()["choices"][0]["message"]["content"] == "Human: hi\nAI: hello\nHuman: q"
    assert (
        motorhead_server.openai.total_tokens()
        == usage["total_tokens"] + (again.json()["usage"]["total_tokens"])
    )
    assert [c.route for c in motorhead_server.openai.chat_calls()] == ["chat", "chat"]


def test_other_prompts_get_a_deterministic_answer(motorhead_server):
    first = chat(motorhead_server, "tell me a joke").json()["choices"][0]["message"]["content"]
    assert (
        first == chat(motorhead_server, "tell me a joke").json()["choices"][0]["message"]["content"]
    )
    assert first != chat(motorhead_server, "another").json()["choices"][0]["message"]["content"]


def test_the_prompt_parser_reads_the_last_block():
    assert parse_summary_prompt(PROMPT.format(previous="s", lines="a\nb")) == ("s", ["a", "b"])
    assert parse_summary_prompt("no prompt here") is None


def test_embeddings_are_unit_vectors_near_for_shared_words(motorhead_server):
    answer = requests.post(
        f"{motorhead_server.openai_url}/embeddings",
        json={"model": "e", "input": ["red apple pie", "apple pie", "diesel engine"]},
        timeout=5,
    )
    body = answer.json()
    assert answer.status_code == 200 and body["object"] == "list"
    vectors = [item["embedding"] for item in body["data"]]
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    assert all(len(v) == 64 and math.isclose(sum(x * x for x in v), 1.0) for v in vectors)

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])
    assert vectors[1] == embed("apple pie")
    assert body["usage"]["total_tokens"] > 0
    single = requests.post(
        f"{motorhead_server.openai_url}/embeddings", json={"model": "e", "input": "x"}, timeout=5
    )
    assert len(single.json()["data"]) == 1
    assert embed("apple pie", seed=1) != embed("apple pie")


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": []}, "messages"),
    ],
)
def test_bad_chat_requests_are_openai_style_400s(motorhead_server, body, param):
    answer = requests.post(f"{motorhead_server.openai_url}/chat/completions", json=body, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param


def test_a_key_can_be_required(motorhead_server_factory):
    server = motorhead_server_factory(llm_api_key="sk-right")
    assert chat(server, "x").status_code == 401
    assert chat(server, "x").json()["error"]["code"] == "invalid_api_key"
    ok = requests.post(
        f"{server.openai_url}/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": "Bearer sk-right"},
        timeout=5,
    )
    assert ok.status_code == 200


def test_llm_faults_are_apart_from_the_motorhead_routes(motorhead_server):
    motorhead_server.llm_faults.fail_next(1, mode="error")
    memory = requests.get(f"{motorhead_server.url}/sessions/s/memory", timeout=5)
    assert memory.status_code == 200
    assert chat(motorhead_server, "x").status_code == 500
    assert chat(motorhead_server, "x").status_code == 200
    motorhead_server.llm_faults.fail_next(1, mode="echo")
    echoed = chat(motorhead_server, "x")
    assert echoed.status_code == 500 and "sk-test" in echoed.text


def test_seeded_fail_rate_replays(motorhead_server_factory):
    def statuses(seed):
        server = motorhead_server_factory(seed=seed)
        server.llm_faults.fail_rate, server.llm_faults.fail_mode = 0.3, "error"
        return [chat(server, "x").status_code for _ in range(20)]

    first = statuses(7)
    assert first == statuses(7) and 500 in first and 200 in first
