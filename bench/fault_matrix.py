"""The fault matrix of issue 26: every fault in every phase where it applies, each cell a pytest test that injects
the fault mid-phase and checks the outcome against a fault-free run (or a complete run, where the cell says so).

    PYTHONPATH=. python bench/fault_matrix.py [--only FAULT ...] [--files TEST_FILE ...] [--figure]

Runs the cells' test files one at a time (each file in one pytest process, so a file's fault-free reference run
is made once), with the cells marked ``faults`` included (``make test`` leaves those out), and prints one row per
cell: the fault, the phase, the outcome (``recovered by itself``, ``clear error + rerun equal``, ``detected +
redone, equal``, or ``NOT equal`` when the test failed), the work redone as the test asserts it (a cell whose
test prints a ``work redone: ...`` line fills it from that line, what it measured), and the seconds the test took
(its file's fault-free reference run is counted in the file's first cell). Writes
bench/results/fault_matrix.json, and with ``--figure`` bench/figures/fault_matrix.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import figure_record, write_figure  # noqa: E402

RECOVERED, RERUN, REDONE = "recovered by itself", "clear error + rerun equal", "detected + redone, equal"
REDONE_LINE = "work redone:"  # a test's printed line of the work it saw redone (tests/pipelines/test_multinode.py)


@dataclass(frozen=True)
class Cell:
    fault: str
    phase: str
    test: str  # pytest node id under tests/pipelines/
    outcome: str  # what the cell shows when its test passes
    redone: str  # the work a recovery redoes, as the test asserts it (a printed "work redone: ..." line replaces it)
    compared: str = "fault-free run"  # what the outcome is compared with

    @property
    def file(self) -> str:
        return self.test.split("::")[0]


CORRUPT = "test_corrupt.py::test_a_corrupt_file_is_redone_and_the_run_ends_in_the_fault_free_dataset"
PHASE_FAULTS = "test_phase_faults.py"
LATER = ("dedup", "decide", "caption", "export")
CELLS = (
    Cell("1 worker node killed", "score",
         "test_multinode.py::test_the_gpu_node_killed_mid_score_ends_in_one_line_and_a_rerun_on_a_new_node_ends_in"
         "_the_fault_free_dataset", RERUN, "units not committed before the kill"),
    Cell("1 worker node killed", "dedup", "test_multinode.py::test_a_worker_node_killed_mid_dedup_is_survived_by"
         "_itself_and_the_run_ends_in_the_fault_free_dataset", RECOVERED, "1 task in flight on the lost node"),
    *(Cell("1 worker node killed", phase, f"test_multinode.py::test_a_worker_node_killed_mid_phase_is_survived"
           f"_by_itself_and_the_run_ends_in_the_fault_free_dataset[{phase}]", RECOVERED, redone)
      for phase, redone in (("ingest", "<= 1 unit per lost ingest actor"),
                            ("decide", "1 task in flight on the lost node"),
                            ("export", "<= 1 shard per lost export actor"))),
    Cell("1 worker node killed", "caption", "test_multinode.py::test_the_captioner_node_killed_mid_batch_is_survived"
         "_once_a_new_node_joins_and_the_run_ends_in_the_fault_free_dataset", RECOVERED,
         "the lost actor's batch in flight"),
    Cell("2 model actor killed", "score", "test_actor_kill.py::test_a_model_actor_killed_mid_batch_is_restarted_and"
         "_the_run_ends_in_the_fault_free_dataset[score]", RECOVERED, "the batch in flight"),
    Cell("2 model actor killed", "caption", "test_actor_kill.py::test_a_model_actor_killed_mid_batch_is_restarted"
         "_and_the_run_ends_in_the_fault_free_dataset[caption]", RECOVERED, "the batch in flight"),
    Cell("3 output volume full", "ingest", "test_disk_full.py::test_a_full_volume_ends_in_one_line_and_a_rerun_after"
         "_growing_it_completes", RERUN, "units not committed before", "complete run (every row once)"),
    Cell("4 object store down 30 s", "ingest (its push)", "test_object_storage.py::test_a_store_stopped_for_30_s_mid"
         "_ingest_is_waited_for_or_named_and_resumed[120.0]", RECOVERED, "0 (retried requests only)"),
    Cell("4 object store down 30 s", "ingest (its push), 5 s retry budget", "test_object_storage.py::test_a_store"
         "_stopped_for_30_s_mid_ingest_is_waited_for_or_named_and_resumed[5.0]", RERUN, "0 (uploads what is missing)"),
    *(Cell("4 object store down 30 s", f"{phase} (its push)", f"test_object_storage.py::test_a_store_stopped_for"
           f"_30_s_mid_phase_is_waited_for_and_the_run_ends_in_the_fault_free_dataset[{phase}]", RECOVERED,
           "0 (retried requests only)") for phase in ("score", "export")),
    Cell("5 corrupt file", "ingest (staged tar truncated)", f"{CORRUPT}[staged tar truncated, --redo score]", REDONE,
         "1 unit staged (+ --redo score)"),
    Cell("5 corrupt file", "ingest (staged parquet emptied)", f"{CORRUPT}[staged parquet emptied]", REDONE,
         "1 unit staged, 1 scored"),
    Cell("5 corrupt file", "score (unit truncated)", f"{CORRUPT}[score unit truncated]", REDONE, "1 unit scored"),
    Cell("5 corrupt file", "score (wrong digest)", f"{CORRUPT}[score unit with a wrong digest]", REDONE,
         "1 unit scored"),
    Cell("5 corrupt file", "dedup (pairs part truncated)", f"{CORRUPT}[dedup pairs part truncated]", REDONE,
         "dedup + decide + caption + export phases"),
    Cell("5 corrupt file", "decide (part truncated)", f"{CORRUPT}[decided part truncated]", REDONE,
         "decide + caption + export phases"),
    Cell("5 corrupt file", "export (manifest part emptied)", f"{CORRUPT}[manifest part emptied]", REDONE,
         "export phase"),
    Cell("5 corrupt file", "caption (part truncated)", "test_corrupt.py::test_a_truncated_caption_part_is_redone_and"
         "_the_run_ends_in_the_fault_free_dataset", REDONE, "1 unit captioned, export phase"),
    Cell("5 corrupt file", "score (single-phase command)", "test_corrupt.py::test_a_single_phase_command_stages_a"
         "_corrupt_unit_again_before_it_scores", REDONE, "1 unit staged, 1 scored"),
    Cell("6 second run", "any (before work)", "test_runlock.py::test_a_second_thresher_run_exits_75_in_one_line"
         "_before_any_work", "refused at once (exit 75)", "0", "nothing written"),
    *(Cell("6 second run", f"any (stale lock, {how})", "test_runlock.py::test_of_many_drivers_taking_over_one_stale"
           f"_lock_exactly_one_wins[{how}]", "stale lock taken over once", "0", "one winner")
      for how in ("at-once", "slow-readers")),
    Cell("7 SIGTERM (preemption)", "ingest", "test_preempt.py::test_sigterm_mid_ingest_exits_143_and_the_same"
         "_command_resumes", RERUN, "units not committed before", "complete run (every row once)"),
    Cell("7 SIGTERM (preemption)", "score", "test_preempt.py::test_sigterm_mid_score_exits_143_and_the_same"
         "_command_resumes", RERUN, "score units not committed before", "complete run (every row once)"),
    *(Cell("3 output volume full", phase, f"{PHASE_FAULTS}::test_a_volume_full_mid_phase_ends_in_one_line_and_a"
           f"_rerun_after_freeing_it_ends_in_the_fault_free_dataset[{phase}]", RERUN,
           "score units not committed before" if phase == "score" else "the phase in flight")
      for phase in ("score", *LATER)),
    *(Cell("7 SIGTERM (preemption)", phase, f"{PHASE_FAULTS}::test_sigterm_mid_phase_exits_143_and_the_same"
           f"_command_resumes_to_the_fault_free_dataset[{phase}]", RERUN, "the phase in flight") for phase in LATER),
    Cell("no partial file visible", "every phase (strace -f)", "test_atomic_writes.py::test_no_partial_or"
         "_temporary_file_is_ever_visible_to_a_reader", "every write to a .tmp name", "0",
         "final names only by rename"),
    Cell("driver kill -9", "ingest, score", "test_crash.py::test_driver_killed_mid_ingest_then_mid_score_then"
         "_resumed", RERUN, "units not committed before", "complete run + fault-free scores"),
)


def run_file(cells: list[Cell], junit: Path) -> dict[str, dict]:
    """Run ``cells`` (one test file) in one pytest process; returns node id -> {passed, seconds, message}."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    ids = [f"tests/pipelines/{c.test}" for c in cells]
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "faults or not faults",
                    f"--junitxml={junit}", "-o", "junit_logging=system-out", *ids], cwd=REPO, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        trouble = next((t for t in (case.find(k) for k in ("failure", "error", "skipped")) if t is not None), None)
        name = f"{Path(case.get('classname').replace('.', '/')).name}.py::{case.get('name')}"
        out = case.findtext("system-out") or ""
        redone = [line.removeprefix(REDONE_LINE).strip() for line in out.splitlines() if line.startswith(REDONE_LINE)]
        found[name] = {"passed": trouble is None, "seconds": round(float(case.get("time", 0)), 1),
                       "message": None if trouble is None else (trouble.get("message") or "")[:300],
                       **({"redone": redone[-1]} if redone and trouble is None else {})}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="faults whose name starts with one of these")
    parser.add_argument("--files", nargs="*", default=None, help="only the cells of these test files")
    parser.add_argument("--figure", action="store_true", help="also write bench/figures/fault_matrix.json")
    args = parser.parse_args()
    cells = [c for c in CELLS if (args.only is None or any(c.fault.startswith(o) for o in args.only))
             and (args.files is None or c.file in args.files)]
    loads, rows, start = [os.getloadavg()[0]], [], time.monotonic()
    print(f"{'fault':27s} {'phase':38s} {'outcome':28s} {'work redone':35s} {'s':>6s}")
    with tempfile.TemporaryDirectory(prefix="fault-matrix-") as tmp:
        for file in dict.fromkeys(c.file for c in cells):
            mine = [c for c in cells if c.file == file]
            results = run_file(mine, Path(tmp) / "junit.xml")
            loads.append(os.getloadavg()[0])
            for cell in mine:
                result = results.get(cell.test, {"passed": False, "seconds": 0.0, "message": "not run"})
                outcome = cell.outcome if result["passed"] else f"NOT equal ({result['message']})"
                rows.append({**asdict(cell), "outcome": outcome, **result})
                print(f"{cell.fault:27s} {cell.phase:38s} {outcome[:28]:28s} {rows[-1]['redone']:35s} "
                      f"{result['seconds']:6.1f}", flush=True)
    record = {"cells": rows, "total_s": round(time.monotonic() - start, 1),
              "failed": [r["test"] for r in rows if not r["passed"]]}
    out = REPO / "bench" / "results" / "fault_matrix.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"{len(rows) - len(record['failed'])}/{len(rows)} cells as expected in {record['total_s']} s; wrote {out}")
    if args.figure:
        command = " ".join(["PYTHONPATH=. python bench/fault_matrix.py", *sys.argv[1:]])
        print("written", write_figure("fault_matrix", {**figure_record(command, loads), **record}))
    sys.exit(1 if record["failed"] else 0)


if __name__ == "__main__":
    main()
