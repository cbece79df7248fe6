"""Shared pytest fixtures, split by the part of the system they start."""

pytest_plugins = [
    "tests.fixtures_display",
    "tests.fixtures_browser",
    "tests.fixtures_models",
]
