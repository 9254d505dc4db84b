"""What every benchmark does first: Django on a settings module, and a database of its own.

The benchmarks run as scripts (``python bench/x.py``), so this folder is on
``sys.path`` and they import this module by its plain name.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django(settings_module: str = "tests.settings") -> None:
    """Django from this checkout, on PostgreSQL unless DATABASE_URL says otherwise."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    import django

    django.setup()


@contextmanager
def own_database(name: str, **options: bool) -> Iterator[str]:
    """Create ``test_<name>``, yield its name, and drop it afterwards, whatever happens."""
    from django.conf import settings
    from django.db import connection

    settings.DATABASES["default"]["NAME"] = name
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, **options)
    try:
        yield connection.settings_dict["NAME"]
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
