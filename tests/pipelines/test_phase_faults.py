"""Fault cells of the phases after ingest, each against one fault-free run of the same input: the output volume
full (a small tmpfs; score, dedup, decide, caption, export) and SIGTERM to the driver (a preemption; dedup, decide,
caption, export: score's is in test_preempt.py).

Every run is ``thresher run CONFIG`` (or one phase's command) in its own process, on the scale-out tests'
corpus (driver.py's config: open_nsfw, RapidOCR, lingua, pHash) with a tiny random BLIP-2 captioner, 6 rows a
unit. A cell ends in the fault-free dataset (``check_same_dataset``) and never touches the files of the phases
before the one it hit (their mtimes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import yaml

from manifests.layout import PHASE_NAMES, RunLayout
from scaleout_support import check_same_dataset, descendants, free_port, node_env, processes_named, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.faults]
REPO = Path(__file__).resolve().parents[2]
LATER = ("dedup", "decide", "caption", "export")
# What a phase finds free when it starts: room for the start of a run (config, run.json), not for the phase.
# Score writes a few KB a unit, so it is left less than the others, and still fills up after some units.
LEFT = {"score": 16 * 1024}


def thresher(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines", *args], cwd=REPO, env=node_env(), capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The config of every run of the module but its output_dir: one URL list served on one port (the same
    input), and a tiny random BLIP-2 captioner, so the caption phase does real work."""
    import torch

    from driver import config_data, corpus
    from pipelines.cli.demo import serve_files, write_url_list
    from support.random_models import save_random

    torch.manual_seed(0)
    blip2 = save_random("blip2", tmp_path_factory.mktemp("tiny-blip2"))
    work = tmp_path_factory.mktemp("input")
    files, rows = corpus()
    with serve_files(files, port=free_port()) as base_url:
        data = config_data(argparse.Namespace(work=str(work)), write_url_list(rows, base_url, work / "urls.parquet"))
        data["caption"] = {"blip2": {"enabled": True, "model": str(blip2), "generation": {"max_new_tokens": 6}}}
        data["resources"]["stages"]["blip2"] = {"batch_size": 2, "num_cpus": 0.5}
        data["export"]["caption_source"] = "caption_blip2"
        yield data


def write_config(settings: dict, out: Path) -> Path:
    config = out.parent / f"{out.name}.yaml"
    config.write_text(yaml.safe_dump({**settings, "output_dir": str(out)}))
    return config


@pytest.fixture(scope="module")
def reference(settings: dict, tmp_path_factory: pytest.TempPathFactory) -> RunLayout:
    out = tmp_path_factory.mktemp("fault-free") / "run"
    done = thresher("run", str(write_config(settings, out)))
    assert done.returncode == 0, done.stderr[-3000:]
    return RunLayout.at(out)


def snapshot(layout: RunLayout, phases: tuple[str, ...]) -> dict[Path, int]:
    """path -> mtime of every file the ``phases`` wrote."""
    return {p: p.stat().st_mtime_ns for name in phases for p in layout.phase_dir(name).rglob("*") if p.is_file()}


def check_untouched(files: dict[Path, int]) -> None:
    changed = [str(p) for p, mtime in files.items() if not p.exists() or p.stat().st_mtime_ns != mtime]
    assert not changed, f"files of finished phases were rewritten or removed: {changed[:5]}"


# --- a full output volume -------------------------------------------------------------------------

@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """A 32 MB tmpfs (root only): the run needs about 3."""
    mnt = tmp_path / "volume"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(volume: Path, leave: int) -> Path:
    """A filler file that takes all of ``volume`` but ``leave`` bytes."""
    filler = volume / "filler"
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, shutil.disk_usage(volume).free - leave)
    return filler


@pytest.mark.parametrize("phase", ("score", *LATER))
def test_a_volume_full_mid_phase_ends_in_one_line_and_a_rerun_after_freeing_it_ends_in_the_fault_free_dataset(
        settings: dict, reference: RunLayout, volume: Path, phase: str) -> None:
    layout = RunLayout.at(volume / "run")
    config = write_config(settings, layout.root)
    before = PHASE_NAMES[:PHASE_NAMES.index(phase)]
    for name in before:  # the run up to the end of the phase before
        done = thresher(name, str(config))
        assert done.returncode == 0, done.stderr[-3000:]
    finished = snapshot(layout, before)
    filler = fill(volume, leave=LEFT.get(phase, 64 * 1024))

    full = thresher("run", str(config))
    assert full.returncode == 74, full.stderr[-3000:]
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith(f"thresher: no space left on the volume of {layout.root} during {phase}: "), last
    assert "rerun the same command" in last and "Traceback" not in full.stderr, full.stderr[-3000:]
    assert not layout.is_done(phase)
    check_untouched(finished)

    filler.unlink()
    again = thresher("run", str(config))
    assert again.returncode == 0, again.stderr[-3000:]
    check_same_dataset(layout, reference)
    check_untouched(finished)


# --- SIGTERM to the driver (a preemption) ----------------------------------------------------------

def in_flight(layout: RunLayout, phase: str, proc: subprocess.Popen) -> Callable[[], bool]:
    """The moment ``phase`` is working: the phase before it is done and the phase has begun its work (the
    captioner's actors up; export's temporary shard folder made)."""
    before = PHASE_NAMES[PHASE_NAMES.index(phase) - 1]
    started = {
        "dedup": lambda: layout.phase_dir("dedup").exists(),
        "decide": lambda: True,  # a few seconds of tasks: signalled as soon as dedup is done
        "caption": lambda: bool(processes_named(descendants(proc), "Blip2Captioner")),
        "export": lambda: any(layout.root.glob(".shards.*.tmp")),
    }[phase]
    return lambda: layout.is_done(before) and started()


@pytest.mark.parametrize("phase", LATER)
def test_sigterm_mid_phase_exits_143_and_the_same_command_resumes_to_the_fault_free_dataset(
        settings: dict, reference: RunLayout, tmp_path: Path, phase: str) -> None:
    layout = RunLayout.at(tmp_path / "run")
    config = write_config(settings, layout.root)
    log = tmp_path / "stderr.log"  # a file, not a pipe: minutes of progress bars must not block the driver
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "pipelines", "run", str(config)], cwd=REPO, env=node_env(),
                                stdout=subprocess.DEVNULL, stderr=stderr)
    wait_until(in_flight(layout, phase, proc), proc, timeout_s=600, poll_s=0.02)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    err = log.read_text()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("thresher: stopped by SIGTERM") and "rerun the same command" in last, last
    assert "Traceback" not in err, err[-3000:]
    assert not layout.is_done(phase), f"{phase} ended before the signal landed"
    assert not (layout.root / ".lock").exists()
    finished = snapshot(layout, PHASE_NAMES[:PHASE_NAMES.index(phase)])
    partial = {p: m for p, m in snapshot(layout, (phase,)).items()  # committed: no temporary name or folder
               if not any(part.startswith(".") for part in p.relative_to(layout.root).parts)}

    again = thresher("run", str(config))
    assert again.returncode == 0, again.stderr[-3000:]
    check_same_dataset(layout, reference)
    check_untouched(finished)  # work redone: at most the phase in flight
    kept = sum(p.exists() and p.stat().st_mtime_ns == m for p, m in partial.items())
    print(f"{phase}: {len(partial)} files of the phase committed at the signal, {kept} kept by the rerun")
