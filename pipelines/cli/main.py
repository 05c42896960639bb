"""``thresher``: run a curation end to end, or one phase of it, or the demo."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from crawl.readers import InputError
from manifests import storage
from manifests.layout import PHASE_NAMES, RunLayout
from pipelines.cli.configdoc import add_config_command, config_command
from pipelines.cli.tools import add_tool_commands, is_tool, run_tool
from pipelines.config import ConfigError, load_config
from pipelines.run import console, diskspace
from pipelines.run.diskspace import DiskFull
from pipelines.run.nodeloss import NodeLost
from pipelines.run.preempt import Preempted, stop_on_sigterm
from pipelines.run.runlock import RunLocked

LOCKED_EXIT = 75  # EX_TEMPFAIL: another driver holds the run directory; try again when it ends
DISK_FULL_EXIT = 74  # EX_IOERR: the output volume is full; rerun after freeing space
UNAVAILABLE_EXIT = 69  # EX_UNAVAILABLE: the object store or a node the run needs is gone; rerun once it is back

if TYPE_CHECKING:
    from pipelines.run.prepared import Run


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config, or an existing run directory (its config.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set filters.rules.min_image_side=256 (repeatable)")
    parser.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else local)")
    _verbose_arg(parser)


def _verbose_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show Ray's logs and every worker's output (default: in RUN/logs/thresher.log)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thresher", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="all phases in order, resuming finished ones")
    _config_args(run)
    run.add_argument("--redo", action="append", default=[], choices=PHASE_NAMES,
                     help="rerun this phase even if done")
    for name in PHASE_NAMES:
        _config_args(sub.add_parser(name, help=f"run only the {name} phase"))
    sub.choices["ingest"].add_argument("--retry-failed", action="store_true",
                                       help="refetch only rows whose status is a retryable failure, in place")
    add_tool_commands(sub, sub.choices["export"])
    demo = sub.add_parser("demo", help="build a corpus from bundled photos, serve it on loopback, curate it")
    demo.add_argument("--out", default="thresher-demo", help="folder for everything the demo writes")
    demo.add_argument("--samples", type=int, default=300, help="approximate number of samples")
    _verbose_arg(demo)
    add_config_command(sub)
    models = sub.add_parser("models", help="the weights a config needs: list them, or fetch them (needs internet)")
    models.add_argument("action", choices=("list", "fetch"))
    models.add_argument("config", nargs="?", help="YAML config or run directory; without: every model filters know")
    models.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return parser


def _captioner_weights(caption, all_known: bool) -> list:
    """Captioners as rows of the same weights table (the enabled ones, or all of them)."""
    from captioning.weights import weights_location
    from filters.weights import Weights

    rows = []
    for name in type(caption).model_fields:  # every captioner section
        captioner = getattr(caption, name)
        if all_known or captioner.enabled:
            present, where = weights_location(captioner)
            rows.append(Weights(f"caption.{name}", f"{captioner.model}@{captioner.revision[:10]}", where, present,
                                "huggingface"))
    return rows


def models_command(action: str, config_path: str | None, overrides: list[str]) -> int:
    """``thresher models list|fetch``: 0 when every listed model's weights are present afterwards."""
    from captioning.config import CaptionConfig
    from captioning.weights import fetch_weights
    from filters import weights as models

    def wanted() -> tuple[list, object]:
        if config_path is None:
            return models.catalogue() + _captioner_weights(CaptionConfig(), True), CaptionConfig()
        config = load_config(config_path, overrides)
        return models.required_weights(config.filters) + _captioner_weights(config.caption, False), config.caption

    if action == "fetch":
        listed, caption = wanted()
        try:
            for weights in listed:
                if weights.section.startswith("caption."):
                    result = fetch_weights(getattr(caption, weights.section.split(".")[1]))
                else:
                    result = models.fetch(weights)
                print(f"{weights.model}: {result}")
        except models.FilterSetupError as exc:
            print(f"thresher: {exc}", file=sys.stderr)
            return 2
    listed, _ = wanted()
    print(models.weights_table(listed))
    return 0 if all(w.present for w in listed) else 1


@contextmanager
def guarded(layout: RunLayout, verbose: bool) -> Iterator[None]:
    """The work of a started run: Ray's native stderr to the log, SIGTERM as Preempted (entered after
    ``ray.init``, whose handler it replaces), a full volume as DiskFull."""
    with console.native_stderr(layout.root, verbose), stop_on_sigterm(), diskspace.reported(layout):
        yield


def start_ray(run: Run, address: str | None, verbose: bool, fresh: bool) -> None:
    """Start or join Ray with its native lines in the run's log; when it fails, a run directory this command
    created goes again (its log kept beside, in the temp dir) and the error is one line."""
    from pipelines.run.runtime import RayStartError, init_ray

    root = run.layout.root
    try:
        with console.native_stderr(root, verbose, show=False):
            init_ray(run.config.ray, address, log_to_driver=verbose)
    except RayStartError as exc:
        if not fresh:
            raise
        console.setup(None, verbose)  # closes the log file
        log = root / console.LOG_FILE
        kept = Path(tempfile.gettempdir()) / f"thresher-ray-start-{os.getpid()}.log"
        if log.exists():
            shutil.move(log, kept)
        shutil.rmtree(root, ignore_errors=True)
        raise RayStartError(f"{exc} (thresher's log: {kept}; no run directory was left)") from exc


def local_root(output_dir: str, staging_dir: str | None) -> Path:
    """Where the run's files are written on this machine: output_dir, or a URI run's local copy."""
    return storage.staging_root(output_dir, staging_dir) if storage.is_uri(output_dir) else Path(output_dir)


def run_command(args: argparse.Namespace, verbose: bool) -> None:
    """``thresher run`` or one phase: prepare the run once, route the logs, start or join Ray, then work."""
    from pipelines.run import driver as runner

    config = load_config(args.config, args.overrides)
    fresh = not storage.is_uri(config.output_dir) and not Path(config.output_dir).exists()
    with diskspace.reported(RunLayout.at(local_root(config.output_dir, config.staging_dir))):  # the lock, config
        run = runner.prepare(config, retry_failed=getattr(args, "retry_failed", False))
    console.setup(run.layout.root, verbose)
    if args.command == "run" and runner.nothing_to_do(run, tuple(args.redo)):
        runner.run_all(run)  # every phase done already with its inputs: no Ray to start
        return
    start_ray(run, args.address, verbose, fresh)
    if args.command == "run":
        with guarded(run.layout, verbose):
            runner.run_all(run, redo=tuple(args.redo))
        return
    with guarded(run.layout, verbose):
        result = runner.run_phase(run, args.command)
    if args.command == "export":
        print(runner.report.summary_table(runner.finish(run), run.layout.root))
    else:
        later = PHASE_NAMES[PHASE_NAMES.index(args.command) + 1]
        print(runner.report.phase_table(args.command, result, run.layout, later))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    try:
        if is_tool(args):
            run_tool(args)
            return 0
        if args.command == "config":
            return config_command(args)
        if args.command == "demo":
            from pipelines.cli.demo import run_demo
            run_demo(args.out, args.samples, verbose=verbose)
            return 0
        if args.command == "models":
            return models_command(args.action, args.config, args.overrides)
        run_command(args, verbose)
    except (ConfigError, FileNotFoundError, InputError) as exc:
        print(f"thresher: {exc}", file=sys.stderr)
        return 2
    except RunLocked as exc:
        print(f"thresher: {exc}", file=sys.stderr)
        return LOCKED_EXIT
    except DiskFull as exc:
        print(f"thresher: {exc}", file=sys.stderr)
        return DISK_FULL_EXIT
    except (storage.StoreUnreachable, NodeLost) as exc:
        print(f"thresher: {exc}", file=sys.stderr)
        return UNAVAILABLE_EXIT
    except Preempted as exc:
        print(f"thresher: stopped by {exc} before the end; committed units are kept: rerun the same command "
              f"to resume", file=sys.stderr)
        return exc.exit_code
    except RuntimeError as exc:
        runtime = sys.modules.get("pipelines.run.runtime")  # imported (with Ray) by the commands that start Ray only
        if runtime is None or not isinstance(exc, runtime.RayStartError):
            raise
        print(f"thresher: {exc}", file=sys.stderr)
        return 1
    except (FileExistsError, ValueError) as exc:
        if not is_tool(args):
            raise
        print(f"thresher {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0
