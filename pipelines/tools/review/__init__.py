"""``thresher review RUN``: a local web app over a finished run -- live thresholds through tune's decision,
what a change flips, browsing, labels that measure each rule, and the reexport command to keep the result.

``decision`` (the cached live decision), ``sliders`` (the thresholds and their overrides), ``rows``
(DuckDB over the manifest parts), ``images`` (staged tar members, contained in the run), ``labels``
(the labels file, stratified draws, estimates), ``service`` (what the handlers ask), ``app`` (aiohttp).
"""
