"""Transport to an OpenAI-compatible API: ``/chat/completions`` and ``/embeddings``.

``requests`` rather than the ``openai`` package: two routes need no SDK, requests
is already a dependency (no extra to install), and retries belong to the Celery
tasks (back-off between attempts, durable across worker restarts), which the
SDK's in-process retries would multiply. Azure's OpenAI routes are reached with
their OpenAI-compatible ``BASE_URL`` (``.../openai/v1``) and an ``api-key`` is
sent as a Bearer token, as LiteLLM, vLLM and Ollama accept. Error texts go
through :func:`~motorhead_django.redaction.redact`: a server that echoes the
key does not put it in a log.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests

from .conf import LLMSettings, motorhead_settings
from .exceptions import MotorheadError
from .redaction import excerpt

_local = threading.local()


class LLMError(MotorheadError):
    """A call to the LLM or embeddings API failed; ``transient`` when a retry can fix it."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


@dataclass(frozen=True)
class Completion:
    text: str
    total_tokens: int


def complete(config: LLMSettings, prompt: str) -> Completion:
    """One chat completion of ``prompt`` (a single user message)."""
    body = {
        "model": config.MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": config.MAX_TOKENS,
        "temperature": 0,
    }
    with _observed("summary") as spent:
        data = _post(config, "/chat/completions", body)
        try:
            text = data["choices"][0]["message"]["content"] or ""
            usage = data.get("usage") or {}
            completion = Completion(str(text).strip(), int(usage.get("total_tokens") or 0))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise LLMError(f"unexpected chat completion shape: {exc!r}", transient=False) from None
        spent.append(completion.total_tokens)
    return completion


def embed(config: LLMSettings, texts: list[str]) -> tuple[list[list[float]], int]:
    """Vectors of ``texts`` (in order) and the tokens spent."""
    with _observed("embedding") as spent:
        data = _post(config, "/embeddings", {"model": config.MODEL, "input": texts})
        try:
            items = sorted(data["data"], key=lambda item: item["index"])
            vectors = [[float(x) for x in item["embedding"]] for item in items]
            tokens = int((data.get("usage") or {}).get("total_tokens") or 0)
        except (KeyError, TypeError, ValueError) as exc:
            raise LLMError(f"unexpected embeddings shape: {exc!r}", transient=False) from None
        if len(vectors) != len(texts):
            raise LLMError(f"{len(vectors)} embeddings for {len(texts)} texts", transient=False)
        spent.append(tokens)
    return vectors, tokens


@contextmanager
def _observed(use: str) -> Iterator[list[int]]:
    """Count the call for the metrics (a no-op while they are off): its outcome and tokens."""
    from . import metrics

    spent: list[int] = []
    try:
        yield spent
    except LLMError as exc:
        metrics.observe_llm(use, "error" if exc.transient else "failed")
        raise
    metrics.observe_llm(use, "ok", sum(spent))


def _post(config: LLMSettings, path: str, body: dict[str, Any]) -> dict[str, Any]:
    url = config.BASE_URL + path
    headers = {"User-Agent": motorhead_settings.USER_AGENT}
    if config.API_KEY:
        headers["Authorization"] = f"Bearer {config.API_KEY}"
    try:
        response = _session().post(url, json=body, headers=headers, timeout=config.TIMEOUT)
    except requests.RequestException as exc:
        raise LLMError(f"POST {url}: {excerpt(str(exc), 300)}") from None
    if response.status_code >= 400:
        transient = response.status_code >= 500 or response.status_code in (408, 409, 429)
        raise LLMError(
            f"POST {url}: {response.status_code} {excerpt(response.text, 300)}",
            status=response.status_code,
            transient=transient,
        )
    try:
        data = response.json()
    except ValueError:
        raise LLMError(f"POST {url}: answer is not JSON: {excerpt(response.text, 200)}") from None
    if not isinstance(data, dict):
        raise LLMError(f"POST {url}: answer is not a JSON object", transient=False)
    return data


def _session() -> requests.Session:
    # One pooled session per thread: requests.Session is not thread-safe.
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session
