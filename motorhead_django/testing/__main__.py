"""``python -m motorhead_django.testing``: run the Motorhead-compatible test server.

The first line printed is ``Motorhead test server listening on <url>``, so a
script can read the URL from it; the server then runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .server import MotorheadTestServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m motorhead_django.testing",
        description="Run a Motorhead-compatible HTTP server for tests and local development. "
        "It keeps its state in memory and summarises with a deterministic stand-in for the LLM.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8080, help="port; 0 picks a free one (default 8080)"
    )
    parser.add_argument(
        "--window-size", type=int, default=12, help="MOTORHEAD_MAX_WINDOW_SIZE (default 12)"
    )
    parser.add_argument("--long-term-memory", action="store_true", help="enable retrieval")
    parser.add_argument(
        "--hosted", action="store_true", help="behave like the managed (Metal) variant"
    )
    parser.add_argument("--api-key", help="the x-metal-api-key the hosted variant requires")
    parser.add_argument("--client-id", help="the x-metal-client-id the hosted variant requires")
    parser.add_argument("--prefix", default="", help="serve the routes under this path")
    parser.add_argument(
        "--compaction-delay", type=float, default=0.0, help="seconds before a compaction runs"
    )
    parser.add_argument(
        "--fail-rate", type=float, default=0.0, help="share of requests failed before applying"
    )
    parser.add_argument(
        "--apply-then-fail-rate", type=float, default=0.0, help="share applied, then failed"
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added before each answer"
    )
    parser.add_argument("--seed", type=int, help="seed for the fault draws")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    if args.hosted and not (args.api_key and args.client_id):
        parser.error("--hosted needs --api-key and --client-id")

    server = MotorheadTestServer(
        host=args.host,
        port=args.port,
        window_size=args.window_size,
        long_term_memory=args.long_term_memory,
        hosted=args.hosted,
        api_key=args.api_key,
        client_id=args.client_id,
        prefix=args.prefix,
        compaction_delay=args.compaction_delay,
        seed=args.seed,
        verbose=args.verbose,
    )
    server.faults.fail_rate = args.fail_rate
    server.faults.apply_then_fail_rate = args.apply_then_fail_rate
    server.faults.latency = args.latency
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    try:
        server.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"Motorhead test server listening on {server.url}", flush=True)
    stopped.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
