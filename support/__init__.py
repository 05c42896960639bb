"""Generated data and random models shared by tests/ and bench/, kept out of the installed packages.

Nothing under the production packages imports from here; tests and bench scripts do (both run with the
repository root on ``sys.path``).
"""
