"""Export one user's 100,000 messages in bounded memory, and import them back identical.

    .venv/bin/python bench/governance_export.py            # 10,000 and 100,000 messages
    .venv/bin/python bench/governance_export.py --quick    # 1,000 and 10,000

Each export (and the import) runs in a child process whose peak RSS
(``ru_maxrss``) is compared with a child that only starts Django and counts the
rows: flat figures across sizes mean the export streams. The database is an
SQLite file of its own (``DATABASE_URL`` may name another).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def child(mode: str, path: str) -> None:
    from _setup import setup_django

    setup_django()
    from django.core.management import call_command

    started = time.perf_counter()
    if mode == "export":
        call_command("motorhead_export", "--user", "bench", "--output", path)
    elif mode == "import":
        with open(os.devnull, "w") as sink:
            call_command("motorhead_import", "--from-export", path, stdout=sink)
    else:
        from motorhead_django.models import ChatMessage

        ChatMessage.objects.count()
    elapsed = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{peak_kb} {elapsed:.3f}")


def run_child(mode: str, path: str) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, path],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ,
    ).stdout.split()
    return int(out[-2]) / 1024, float(out[-1])


def seed(messages: int, sessions: int = 20) -> None:
    from django.contrib.auth import get_user_model

    from motorhead_django.models import ChatMessage, ChatSession

    ChatSession.objects.all().delete()
    users = get_user_model()
    user = users.objects.filter(username="bench").first() or users.objects.create_user("bench")
    per = messages // sessions
    for number in range(sessions):
        session = ChatSession.objects.create(
            session_id=f"chat-{number}", owner=user, last_sequence=per, metadata={"n": number}
        )
        for start in range(0, per, 5000):
            ChatMessage.objects.bulk_create(
                ChatMessage(
                    session=session,
                    sequence=seq,
                    role="Human" if seq % 2 else "AI",
                    content=f"message {seq} of session {number}: " + "lorem ipsum " * 8,
                )
                for seq in range(start + 1, min(per, start + 5000) + 1)
            )


def fingerprint() -> str:
    from motorhead_django import export
    from motorhead_django.models import ChatMessage, ChatSession

    digest = hashlib.sha256()
    for row in ChatSession.objects.order_by("session_id").values_list(
        *export._SESSION_FIELDS, "owner_id"
    ):
        digest.update(repr(row).encode())
    rows = ChatMessage.objects.order_by("session__session_id", "sequence").values_list(
        "session__session_id", *export._MESSAGE_FIELDS
    )
    for row in rows.iterator(chunk_size=5000):
        digest.update(repr(row).encode())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"))
    options = parser.parse_args()
    if options.child:
        child(*options.child)
        return
    work = Path(tempfile.mkdtemp(prefix="motorhead-governance-bench-"))
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{work / 'bench.sqlite3'}")
    from _setup import setup_django

    setup_django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    sizes = (1_000, 10_000) if options.quick else (10_000, 100_000)
    print(f"database: {os.environ['DATABASE_URL'].split('://')[0]}")
    for size in sizes:
        seed(size)
        export_file = work / f"export-{size}.jsonl"
        baseline, _ = run_child("baseline", str(export_file))
        peak, seconds = run_child("export", str(export_file))
        before = fingerprint()
        from motorhead_django.models import ChatSession

        ChatSession.objects.all().delete()
        import_peak, import_seconds = run_child("import", str(export_file))
        same = fingerprint() == before
        megabytes = export_file.stat().st_size / 1e6
        print(
            f"{size:>7} messages: export {seconds:.2f} s, {megabytes:.1f} MB, "
            f"peak RSS {peak:.1f} MB "
            f"(baseline {baseline:.1f} MB, +{peak - baseline:.1f}); import {import_seconds:.2f} s, "
            f"peak RSS {import_peak:.1f} MB; round trip identical: {same}"
        )


if __name__ == "__main__":
    main()
