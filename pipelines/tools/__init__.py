"""Tools on a finished run: query, tune, plots, audit, card, reexport, review."""
