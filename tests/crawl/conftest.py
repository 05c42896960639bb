"""Fixtures for tests/crawl live in crawl_support.py, a uniquely named module that its tests can also import from."""

from crawl_support import *  # noqa: F401,F403
from crawl_support import _server_a, _server_b  # noqa: F401
