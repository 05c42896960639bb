"""Fixtures for tests/manifests live in tooling_support.py, a uniquely named module that its tests can also import from."""

from tooling_support import *  # noqa: F401,F403
