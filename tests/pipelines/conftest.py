"""Fixtures for tests/pipelines live in scaleout_support.py, a uniquely named module that its tests can also import from."""

from scaleout_support import *  # noqa: F401,F403
