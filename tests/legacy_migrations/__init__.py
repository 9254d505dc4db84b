"""The migration chain 0001-0015 as it stood before the squash into one ``0001_initial``.

Kept only for tests/test_migrations.py: it builds a database the way an install of the
unreleased chain did, to check that the squashed ``0001_initial`` takes it over as it is.
Not shipped (the wheel holds motorhead_django/ only); never edit these files.
"""
