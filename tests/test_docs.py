"""Every command and code block in README.md and docs/ that a user is meant to run, checked.

- ``manage.py X ...`` (in blocks and in inline code): the command exists and its own
  parser accepts exactly those options;
- ``python -m motorhead_django.testing ...``: its parser accepts them;
- ``dev.py X``, ``celery -A APP ...``, ``.venv/bin/python FILE``: the subcommand, the app
  and the file exist;
- Python blocks compile, their ``motorhead_django`` imports resolve, and every
  ``module.name`` they use on an imported module exists;
- error texts quoted in the docs are the ones the code produces;
- every environment variable dev.py and the example project read is in the README;
- relative links point at files that exist.

The README's Celery path is run for real in tests/test_readme_production.py.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
import shlex
import sys
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class

from .docs_blocks import DOCUMENTS, ROOT, Block, all_blocks, commands, split_env

README = ROOT / "README.md"
# Project names the docs use as placeholders for the reader's own project.
PLACEHOLDER_APPS = {"yourproject", "proj"}
# Commands of projects other than the test settings' (the example project's).
OTHER_COMMANDS = {"example_demo_user": "example_project"}


def documented_lines() -> list[tuple[str, str]]:
    """(where, line) for every line of a shell block and every inline code span."""
    found = []
    for block in all_blocks():
        if block.language in ("sh", ""):
            found += [(block.where, line) for line in block.text.splitlines() if line.strip()]
    for path in DOCUMENTS:
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
        for span in re.findall(r"`([^`\n]+)`", text):
            found.append((str(path.relative_to(ROOT)), span))
    return found


def manage_commands() -> list[tuple[str, list[str]]]:
    found = []
    for where, line in documented_lines():
        for match in re.finditer(r"manage\.py\s+([^|)#`]+)", line):
            # [optional] parts are given; <a placeholder> and NS stand for a value.
            spec = re.sub(r"<[^>]+>", "VALUE", match.group(1))
            words = shlex.split(spec.replace("[", " ").replace("]", " "))
            if words and re.fullmatch(r"[a-z_]+", words[0]):
                found.append((where, words))
    return found


MANAGE = manage_commands()


def test_the_docs_have_manage_py_commands_to_check():
    names = {words[0] for _, words in MANAGE}
    assert {"migrate", "check", "motorhead_sync", "motorhead_import", "motorhead_apikey"} <= names


@pytest.mark.parametrize(("where", "words"), MANAGE, ids=[" ".join(w) for _, w in MANAGE])
def test_each_documented_manage_py_command_exists_with_those_options(where, words):
    name, *args = words
    app = OTHER_COMMANDS.get(name) or get_commands().get(name)
    assert app, f"{where}: `manage.py {name}` is not a command"
    command = load_command_class(app, name)
    parser = command.create_parser("manage.py", name)
    # Placeholders in upper case (ID, NS) stand for values: any value parses.
    try:
        parser.parse_args(args)
    except (SystemExit, Exception) as exc:  # CommandParser raises CommandError
        pytest.fail(f"{where}: `manage.py {' '.join(words)}` is refused by its parser: {exc}")


def other_commands() -> list[tuple[str, list[str]]]:
    found = []
    for block in all_blocks():
        if block.language != "sh":
            continue
        for words in commands(block):
            _, words = split_env(words)
            if words and "manage.py" not in words:
                found.append((block.where, words))
    return found


OTHER = other_commands()


@pytest.mark.parametrize(("where", "words"), OTHER, ids=[" ".join(w) for _, w in OTHER])
def test_each_other_documented_command_names_things_that_exist(where, words):
    program = Path(words[0]).name
    if program in ("python3.11", "python") and words[1] == "dev.py":
        sys.path.insert(0, str(ROOT))
        try:
            import dev
        finally:
            sys.path.remove(str(ROOT))
        assert words[2] in ("example", "test"), where
        if words[2] == "example":
            assert set(words[3:]) <= {"--worker"}, where
        assert dev.main  # the file is importable
    elif program == "python" and words[1:3] == ["-m", "motorhead_django.testing"]:
        from motorhead_django.testing import __main__ as server_main

        if words[3:] == ["--help"]:
            return
        parser_source = Path(server_main.__file__).read_text()
        for option in (w for w in words[3:] if w.startswith("--")):
            assert f'"{option}"' in parser_source, f"{where}: no option {option}"
    elif program == "celery":
        assert words[1] == "-A", where
        app, role = words[2], words[3]
        assert role in ("worker", "beat"), where
        if app not in PLACEHOLDER_APPS:
            module = importlib.import_module(f"{app}.celery")
            assert module.app.main == app
    elif program == "pip":
        assert words[1] == "install"
        package = words[2]
        base, _, extras = package.partition("[")
        assert base == "motorhead-django", where
        declared = (ROOT / "setup.cfg").read_text()
        for extra in extras.rstrip("]").split(","):
            if extra:
                assert f"\n{extra} =" in declared, f"{where}: no extra [{extra}]"
    elif program == "python" and words[1:3] == ["-m", "pytest"]:
        _check_pytest_arguments(where, words[3:])
    elif program == "pre-commit":
        assert (ROOT / ".pre-commit-config.yaml").exists(), where
        assert words[1] in ("install", "run"), where
    elif program == "nox":
        if "-s" in words:
            session = words[words.index("-s") + 1]
            assert session in nox_sessions(), f"{where}: no nox session {session}"
        else:
            assert words[1:] == ["-l"], where
    else:
        pytest.fail(f"{where}: a command this test does not know how to check: {words}")


def _check_pytest_arguments(where: str, args: list[str]) -> None:
    """Paths exist, and every marker a ``-m`` expression names is registered."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    registered = {line.split(":")[0] for line in config["markers"]}
    for index, arg in enumerate(args):
        if index > 0 and args[index - 1] == "-m":
            names = set(re.findall(r"\w+", arg)) - {"not", "and", "or"}
            assert names and names <= registered, f"{where}: unregistered marker in {arg!r}"
        elif arg.startswith("tests/"):
            assert (ROOT / arg).exists(), f"{where}: {arg}"


@functools.cache
def nox_sessions() -> frozenset[str]:
    import subprocess

    listing = subprocess.run(
        [sys.executable, "-m", "nox", "-l"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return frozenset(line[2:] for line in listing.splitlines() if line.startswith("* "))


def python_blocks() -> list[Block]:
    return all_blocks("python")


@pytest.mark.parametrize("block", python_blocks(), ids=lambda b: b.where)
def test_each_python_block_compiles_and_uses_names_that_exist(block):
    tree = ast.parse(block.text, filename=block.where)
    modules: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("motorhead_django"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                if hasattr(module, alias.name):
                    value = getattr(module, alias.name)
                else:  # a submodule
                    value = importlib.import_module(f"{node.module}.{alias.name}")
                modules[alias.asname or alias.name] = value
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("motorhead_django"):
                    modules[alias.asname or alias.name] = importlib.import_module(alias.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and isinstance(modules[node.value.id], type(sys))
        ):
            module = modules[node.value.id]
            assert hasattr(module, node.attr), f"{block.where}: {node.value.id}.{node.attr}"


# -- error texts ---------------------------------------------------------------------------


def produced_errors() -> set[str]:
    """The texts the code really produces for the inputs the docs describe."""
    from django.test import Client, override_settings

    from motorhead_django import memory
    from motorhead_django.exceptions import MotorheadValidationError

    texts: set[str] = set()

    def caught(call) -> None:
        try:
            call()
        except MotorheadValidationError as exc:
            texts.update(exc.errors.values())
        else:  # pragma: no cover
            raise AssertionError("no error")

    caught(lambda: memory.validate_session_id("x" * 256))
    with override_settings(MOTORHEAD={"ALLOWED_ROLES": ["Human", "AI"]}):
        caught(lambda: memory.validate_role("System"))
    client = Client()
    with override_settings(MOTORHEAD={"COMPAT_ALLOW_ANONYMOUS": True}):
        texts.update(client.get("/motorhead/sessions?page=0").json()["page"])
        deep = "[" * 70 + "]" * 70
        answer = client.post("/motorhead/sessions/a/memory", deep, content_type="application/json")
        texts.add(answer.json()["detail"])
        too_long = {"messages": [{"role": "Human", "content": "x" * 100_001}]}
        answer = client.post(
            "/motorhead/sessions/a/memory", too_long, content_type="application/json"
        )
        texts.update(text for values in answer.json().values() for text in values)
    return {" ".join(text.split()) for text in texts}


def quoted_errors() -> list[tuple[str, str]]:
    """Error texts the docs quote: JSON error bodies' messages."""
    found = []
    for path in DOCUMENTS:
        text = path.read_text()
        for pattern in (r'\["([^"\]]{6,})"\]', r'"(?:detail|error)":\s*"([^"]{6,})"'):
            for match in re.finditer(pattern, text):
                message = " ".join(match.group(1).split())
                if " " in message:  # a sentence, not a dotted path or a name
                    found.append((str(path.relative_to(ROOT)), message))
    return found


def source_text() -> str:
    import django
    import rest_framework

    roots = [ROOT / "motorhead_django", Path(rest_framework.__file__).parent]
    roots.append(Path(django.__file__).parent / "core")
    return "\n".join(p.read_text(errors="replace") for r in roots for p in r.rglob("*.py"))


@pytest.mark.django_db
def test_error_texts_quoted_in_the_docs_are_the_real_ones():
    produced = produced_errors()
    source = source_text()
    quoted = quoted_errors()
    assert len(quoted) >= 8
    wrong = []
    for where, text in quoted:
        if text in produced:
            continue
        fragments = [f.strip() for f in re.split(r"…|\.\.\.", text) if len(f.strip()) > 3]
        # A literal message (ours, DRF's or Django's), or the start of one we produced.
        if fragments and all(
            f in source or any(p.startswith(f) for p in produced) for f in fragments
        ):
            continue
        wrong.append(f"{where}: {text!r}")
    assert wrong == [], "quoted texts the code does not produce:\n" + "\n".join(wrong)


def test_quoted_command_outputs_are_the_real_ones():
    """Outputs the docs tell the reader to look for."""
    source = source_text()
    pull = (ROOT / "docs" / "pull.md").read_text()
    assert "`0 session(s) imported`" in pull and "session(s) imported" in source
    admin = (ROOT / "docs" / "admin.md").read_text()
    assert '"yes (details need the change' in admin
    assert "yes (details need the change permission)" in source
    assert "the page that created it" in (ROOT / "docs" / "api.md").read_text()


def test_the_api_docs_say_deletes_reach_the_server():
    api = (ROOT / "docs" / "api.md").read_text()
    assert "upstream copy is not deleted" not in api
    assert "Not yet:" not in api
    assert "in a message)" not in api


# -- environment variables ----------------------------------------------------------------


def variables_read(path: Path) -> set[str]:
    text = path.read_text()
    patterns = [
        r'environ\.get\(\s*"([A-Z_]+)"',
        r'environ\[\s*"([A-Z_]+)"\]',
        r'env\.get\(\s*"([A-Z_]+)"',
        r'env\[\s*"([A-Z_]+)"\]',
        r'setdefault\(\s*"([A-Z_]+)"',
        r'env_(?:bool|list)\(\s*"([A-Z_]+)"',
        r'"([A-Z_]+)" (?:not )?in os\.environ',
    ]
    return {name for pattern in patterns for name in re.findall(pattern, text)}


@pytest.mark.parametrize(
    "path",
    [
        ROOT / "dev.py",
        ROOT / "example_project" / "settings.py",
        ROOT / "example_project" / "celery.py",
    ],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_variable_read_is_documented_in_the_readme(path):
    readme = README.read_text()
    names = variables_read(path) - {"DJANGO_SETTINGS_MODULE"}
    assert names
    missing = sorted(name for name in names if f"`{name}`" not in readme)
    assert missing == [], f"{path.name} reads {missing}, which README.md does not document"


def test_dev_py_reads_port():
    assert "PORT" in variables_read(ROOT / "dev.py")


# -- links ------------------------------------------------------------------------------------


def test_relative_links_point_at_files_that_exist():
    broken = []
    for path in DOCUMENTS:
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            if not (path.parent / target).exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert broken == []


def test_files_and_dev_py_subcommands_named_in_inline_commands_exist():
    checked = 0
    for where, span in documented_lines():
        words = span.split("#", 1)[0].split()
        if len(words) >= 2 and words[0].endswith(("/python", "python3.11", "python")):
            if words[1].endswith(".py"):
                assert (ROOT / words[1]).exists(), f"{where}: {span}"
                checked += 1
            if words[1] == "dev.py" and len(words) > 2:
                assert words[2] in ("example", "test"), f"{where}: {span}"
                if words[2] == "example":
                    assert set(words[3:]) <= {"--worker"}, f"{where}: {span}"
        if words and words[0].startswith((".ci/", "bench/")) and not words[0].endswith("/"):
            assert (ROOT / words[0]).exists(), f"{where}: {span}"
            checked += 1
    assert checked >= 3
