"""Fenced code blocks of README.md and docs/*.md, for the tests that run them."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    section: str  # the nearest "## " heading above it ("" before the first)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def target(self) -> str | None:
        """The file a Python block belongs in, from its first line (``# settings.py``)."""
        first = self.text.splitlines()[0] if self.text else ""
        match = re.fullmatch(r"#\s*([\w./]+\.py)", first.strip())
        return match.group(1) if match else None


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    language: str | None = None
    start = 0
    heading = ""
    lines: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = _FENCE.match(line)
        if language is None and match:
            language, start, lines = match.group(1), number, []
        elif language is not None and line.strip() == "```":
            found.append(Block(path, start, language, "\n".join(lines) + "\n", heading))
            language = None
        elif language is not None:
            lines.append(line)
        elif line.startswith("## "):
            heading = line[3:].strip()
    return found


def all_blocks(language: str | None = None) -> list[Block]:
    return [
        block
        for path in DOCUMENTS
        for block in blocks(path)
        if language is None or block.language == language
    ]


def section_blocks(path: Path, heading: str) -> list[Block]:
    """The blocks under one "## " heading, subsections included."""
    return [block for block in blocks(path) if block.section == heading]


def commands(block: Block) -> list[list[str]]:
    """The shell command lines of a block, without comments, split as a shell would."""
    found = []
    for line in block.text.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            found.append(words)
    return found


def split_env(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """``A=1 B=2 cmd args`` -> ({"A": "1", "B": "2"}, ["cmd", "args"])."""
    env: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, _, value = words[0].partition("=")
        env[name] = value
        words = words[1:]
    return env, words
