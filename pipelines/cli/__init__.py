"""The command line: ``thresher ...``, the config reference, the demo."""
