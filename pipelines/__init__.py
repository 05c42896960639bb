"""The run config, the Ray DAG of phases, and the ``thresher`` CLI. The only package that imports Ray."""
