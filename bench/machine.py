"""The record a committed benchmark figure carries: the command, the machine, the date, the load.

Figures the README quotes are written to ``bench/figures/NAME.json`` (committed, small); everything
else a benchmark writes stays under ``bench/results/`` (ignored).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

FIGURES = Path(__file__).resolve().parent / "figures"


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor())


def machine() -> dict:
    """Cores, memory and CPU of this machine (os.cpu_count: what the OS offers this process)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpus": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)), "memory_gib": round(memory / 2**30, 1),
            "cpu_model": cpu_model(), "python": platform.python_version(), "system": platform.platform()}


def figure_record(command: str, load_samples: list[float]) -> dict:
    """The head of a figure's JSON: ``load_samples`` are 1-minute load averages taken during the run."""
    return {"command": command, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
            "load_avg_1m": {"samples": [round(x, 2) for x in load_samples], "max": round(max(load_samples), 2)}}


def write_figure(name: str, record: dict) -> Path:
    FIGURES.mkdir(exist_ok=True)
    path = FIGURES / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path
