"""The HTTP API: Starlette app factory, one route module per seed module."""
