"""The HTTP surfaces: ``rest`` (the REST resources) and ``compat`` (Motorhead's own routes)."""
