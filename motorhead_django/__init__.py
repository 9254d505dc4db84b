"""Conversational memory for Django, mirrored with a Motorhead memory server."""

__version__ = "0.1.0"
