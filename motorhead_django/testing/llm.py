"""OpenAI-compatible ``/v1/chat/completions`` and ``/v1/embeddings`` routes for the test server.

Deterministic stand-ins for an LLM and an embedding model, so tests of the
built-in summariser and of retrieval run without a network:

* a chat completion whose prompt is the progressive-summary prompt answers the
  previous summary followed by the new lines (so a test can read, in the final
  summary, every line that was ever summarised, in order); any other prompt gets
  a short seeded answer. ``usage`` counts about four characters a token.
* an embedding is a hashed bag of words (``dimensions`` floats, unit length):
  texts that share words are near each other by cosine, the same text always
  gives the same vector, and ``seed`` changes the hashing.

Every call is recorded in :attr:`OpenAIRoutes.calls`; faults come from the
server's ``llm_faults`` (a :class:`~motorhead_django.testing.Faults` apart from
the Motorhead routes' one, so a test can make the LLM fail and not the server).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .store import approximate_tokens

# The markers of the progressive-summary prompt (motorhead_django.summaries.PROMPT).
_CURRENT = "Current summary:\n"
_NEW_LINES = "\n\nNew lines of conversation:\n"
_NEW_SUMMARY = "\n\nNew summary:"

ChatModel = Callable[[list[dict[str, Any]]], str]


@dataclass
class LLMCall:
    route: str  # "chat" or "embeddings"
    request: dict[str, Any]
    answer: Any
    total_tokens: int


def parse_summary_prompt(prompt: str) -> tuple[str, list[str]] | None:
    """``(previous summary, new lines)`` of a progressive-summary prompt, or None."""
    start = prompt.rfind(_CURRENT)
    if start < 0:
        return None
    rest = prompt[start + len(_CURRENT) :]
    previous, found, rest = rest.partition(_NEW_LINES)
    if not found:
        return None
    lines, found, _ = rest.rpartition(_NEW_SUMMARY)
    if not found:
        return None
    return previous.strip(), [line for line in lines.split("\n") if line]


def summarizing_model(messages: list[dict[str, Any]]) -> str:
    """The default chat model: concatenates for a summary prompt, else a fixed reply."""
    prompt = "\n".join(str(m.get("content", "")) for m in messages)
    parsed = parse_summary_prompt(prompt)
    if parsed is None:
        digest = hashlib.sha256(prompt.encode()).hexdigest()[:12]
        return f"test completion {digest}"
    previous, lines = parsed
    if not lines:
        return previous or "NONE"
    joined = "\n".join(lines)
    return f"{previous}\n{joined}" if previous and previous != "NONE" else joined


def embed(text: str, dimensions: int = 64, seed: int = 0) -> list[float]:
    """A hashed bag of words, unit length (all zeros but one for a text without words)."""
    vector = [0.0] * dimensions
    for word in re.findall(r"\w+", text.lower()):
        digest = hashlib.blake2b(f"{seed}:{word}".encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dimensions
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if not norm:
        vector[0] = 1.0
        return vector
    return [x / norm for x in vector]


@dataclass
class OpenAIRoutes:
    """State of the test server's OpenAI-compatible routes."""

    model: ChatModel = summarizing_model
    dimensions: int = 64
    seed: int = 0
    # When set, requests must carry "Authorization: Bearer <api_key>" (401 otherwise).
    api_key: str | None = None
    calls: list[LLMCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def chat_calls(self) -> list[LLMCall]:
        with self._lock:
            return [call for call in self.calls if call.route == "chat"]

    def embedding_calls(self) -> list[LLMCall]:
        with self._lock:
            return [call for call in self.calls if call.route == "embeddings"]

    def total_tokens(self, route: str = "chat") -> int:
        with self._lock:
            return sum(call.total_tokens for call in self.calls if call.route == route)

    def handles(self, path: str) -> bool:
        return path in ("/v1/chat/completions", "/v1/embeddings")

    def answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """Status and JSON body for one request to a ``/v1`` route."""
        if method != "POST":
            return 405, _error("Method not allowed", "invalid_request_error")
        if self.api_key is not None:
            sent = headers.get("authorization") or headers.get("Authorization") or ""
            if sent != f"Bearer {self.api_key}":
                return 401, _error("Incorrect API key provided.", "invalid_api_key")
        try:
            request = json.loads(body or b"null")
        except ValueError:
            return 400, _error("We could not parse the JSON body of your request.", None)
        if not isinstance(request, dict) or not isinstance(request.get("model"), str):
            return 400, _error("you must provide a model parameter", None, param="model")
        if path.endswith("/chat/completions"):
            return self._chat(request)
        return self._embeddings(request)

    def _chat(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, _error("'messages' is a required property", None, param="messages")
        text = self.model(messages)
        prompt_tokens = sum(approximate_tokens(str(m.get("content", ""))) for m in messages)
        completion_tokens = approximate_tokens(text)
        total = prompt_tokens + completion_tokens
        with self._lock:
            number = len(self.calls)
            self.calls.append(LLMCall("chat", request, text, total))
        return 200, {
            "id": f"chatcmpl-test-{number}",
            "object": "chat.completion",
            "created": 0,
            "model": request["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": total,
            },
        }

    def _embeddings(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        inputs = request.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        strings = isinstance(inputs, list) and all(isinstance(i, str) for i in inputs)
        if not (strings and inputs):
            return 400, _error("'input' must be a string or a list of strings", None, "input")
        dimensions = request.get("dimensions") or self.dimensions
        data = [
            {"object": "embedding", "index": n, "embedding": embed(text, dimensions, self.seed)}
            for n, text in enumerate(inputs)
        ]
        tokens = sum(approximate_tokens(text) for text in inputs)
        with self._lock:
            self.calls.append(LLMCall("embeddings", request, len(data), tokens))
        return 200, {
            "object": "list",
            "data": data,
            "model": request["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _error(message: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }
