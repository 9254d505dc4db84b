#!/usr/bin/env python
"""Django's command-line utility for the example project.

A development entry point: it runs with DEBUG on unless the environment says
otherwise, so `python manage.py migrate` works in a fresh checkout. Deployments
go through wsgi.py, where DEBUG is off and SECRET_KEY is required.
"""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    os.environ.setdefault("DEBUG", "true")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
