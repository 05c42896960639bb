"""CLI wiring of the manifest tools: ``thresher query|tune|plots|audit|card|reexport|review RUN``.

``thresher reexport RUN`` writes new shards under a new name (``pipelines.tools.commands.run_export``) and never
writes into the run. ``thresher export`` is the export phase; given a run directory (without
``--in-place``) it still re-exports, with a deprecation note, for one release.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TOOLS = ("query", "tune", "plots", "audit", "card", "reexport", "review")
EXPORT_DEPRECATION = ("thresher: 'thresher export RUN_DIR' is deprecated and will be removed in the next "
                      "release; use 'thresher reexport RUN_DIR'")


def _run_args(parser: argparse.ArgumentParser, overrides: bool = True) -> None:
    parser.add_argument("run", type=Path, help="a run directory (holds manifest/ and config.yaml)")
    if overrides:
        parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                            help="a new threshold, e.g. --set filters.rules.min_image_side=256 (repeatable)")


def add_tool_commands(sub, export: argparse.ArgumentParser) -> None:
    """The manifest tools; none loads a model or starts Ray."""
    query = sub.add_parser("query", help="SQL over a run's manifest (DuckDB; the table is named manifest)")
    _run_args(query, overrides=False)
    query.add_argument("sql", help='e.g. "SELECT status, count(*) FROM manifest GROUP BY status"')
    query.add_argument("--out", type=Path, help="write the result to a .csv or .parquet file instead")
    query.add_argument("--max-rows", type=int, default=50, help="rows to print (default 50)")
    _run_args(sub.add_parser("tune", help="kept/rejected counts with new thresholds, from the manifest only"))
    plots = sub.add_parser("plots", help="PNG histograms of each score and a bar chart of reject reasons")
    _run_args(plots)
    plots.add_argument("--out", type=Path, help="folder for the PNGs (default RUN/reports/plots)")
    audit = sub.add_parser("audit", help="a static HTML report of rejected and borderline samples")
    _run_args(audit)
    audit.add_argument("--reason", help="show only the samples rejected for this reason")
    audit.add_argument("--limit", type=int, default=24, help="samples shown per reason and per threshold")
    audit.add_argument("--out", type=Path, help="the HTML file (default RUN/reports/audit.html)")
    card = sub.add_parser("card", help="DATASET_CARD.md + JSON after the EU training-content summary template")
    _run_args(card)
    card.add_argument("--out", type=Path, help="folder for the card (default RUN/reports)")
    review = sub.add_parser("review", help="a local web app: live thresholds, what flips, labels, reexport command")
    _run_args(review, overrides=False)
    review.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback; a token is always needed)")
    review.add_argument("--port", type=int, default=8750, help="port (default 8750; 0: any free port)")
    review.add_argument("--who", default=None, help="the name labels are saved under (default: the login name)")
    reexport = sub.add_parser("reexport", help="new shards and manifest with new thresholds, beside the run")
    _run_args(reexport)
    _reexport_args(reexport)
    export.description = ("The export phase. Given a run directory (deprecated; use thresher reexport): "
                          "re-export it under a new name, leaving the run untouched.")
    _reexport_args(export)
    export.add_argument("--in-place", action="store_true", help="run the export phase inside the run directory")


def _reexport_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="re-export name (default: export-<hash of the overrides>)")
    parser.add_argument("--out", type=Path, help="re-export folder (default: RUN-NAME beside the run)")


def run_tool(args: argparse.Namespace) -> None:
    from pipelines.tools import commands as tools
    if args.command == "query":
        print(tools.run_query(args.run, args.sql, args.out, args.max_rows))
    elif args.command == "tune":
        print(tools.run_tune(args.run, args.overrides)[1])
    elif args.command == "plots":
        print("\n".join(str(p) for p in tools.run_plots(args.run, args.overrides, args.out)))
    elif args.command == "audit":
        print(tools.run_audit(args.run, args.overrides, args.reason, args.limit, args.out))
    elif args.command == "review":
        import getpass

        from pipelines.tools.review.app import serve_forever
        serve_forever(args.run, args.host, args.port, args.who or getpass.getuser())
    elif args.command == "card":
        print("\n".join(str(p) for p in tools.run_card(args.run, args.out, args.overrides)))
    else:
        if args.command == "export":
            print(EXPORT_DEPRECATION, file=sys.stderr)
        run = args.run if args.command == "reexport" else Path(args.config)
        target, summary = tools.run_export(run, args.overrides, args.name, args.out)
        print(f"exported {summary['kept']} of {summary['rows']} rows in {summary['shards']} shards to {target}")


def is_tool(args: argparse.Namespace) -> bool:
    """query, tune, plots, audit, reexport, and export given a run directory (unless --in-place)."""
    if args.command in TOOLS:
        return True
    return args.command == "export" and not args.in_place and Path(args.config).is_dir()
