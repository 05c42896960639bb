"""``thresher config [--full]``: the default config as commented YAML that validates as it is printed.

Generated from the pydantic models themselves (every field, its default, its description and, for a
choice, what it accepts), so it can never drift from what ``load_config`` accepts.
"""

from __future__ import annotations

import argparse
import textwrap
import typing
from typing import Any

import yaml
from pydantic import BaseModel

from pipelines.config import RunConfig

# Required fields get a placeholder, so the printed file validates; the user replaces them.
PLACEHOLDERS = {"output_dir": "runs/my-run", "input.path": "urls.parquet"}
SHORT = ("output_dir", "input", "filters", "export", "ray")  # what a first run sets; --full adds the rest
WIDTH = 100


def add_config_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("config", help="print a commented default config (YAML) to start from")
    parser.add_argument("--full", action="store_true", help="every section and field, not only the common ones")


def config_command(args: argparse.Namespace) -> int:
    print(render(full=args.full), end="")
    return 0


def default_config() -> RunConfig:
    return RunConfig(output_dir=PLACEHOLDERS["output_dir"], input={"path": PLACEHOLDERS["input.path"]})


def render(full: bool = False) -> str:
    lines = ["# Thresher run config: every field below shows its default. Run it with `thresher run THIS.yaml`;",
             "# override any field with --set section.field=value."]
    if not full:
        lines.append("# `thresher config --full` prints every section (crawl, dedup, caption, resources, ...).")
    lines.append("")
    config = default_config()
    for name in RunConfig.model_fields:
        if full or name in SHORT:
            lines += _field(config, name, "", 0)
    return "\n".join(lines) + "\n"


def _field(model: BaseModel, name: str, prefix: str, depth: int) -> list[str]:
    info = type(model).model_fields[name]
    value = getattr(model, name)
    indent = "  " * depth
    notes = [info.description] if info.description else []
    if f"{prefix}{name}" in PLACEHOLDERS:
        notes.insert(0, "REQUIRED (this value is an example)")
    comment = [f"{indent}# {line}" for line in textwrap.wrap("; ".join(notes), WIDTH - len(indent) - 2)]
    choices = _choices(info.annotation)
    if choices:  # a line of its own, so the list is not broken across lines
        comment += [f"{indent}# {line}" for line in textwrap.wrap("one of: " + ", ".join(str(c) for c in choices),
                                                                  WIDTH - len(indent) - 2)]
    if isinstance(value, BaseModel):
        doc = " ".join((type(value).__doc__ or "").strip().split("\n\n")[0].split())  # the first paragraph
        head = [f"{indent}# {line}" for line in textwrap.wrap(doc, WIDTH - len(indent) - 2)] if doc else []
        body = [line for sub in type(value).model_fields for line in _field(value, sub, f"{prefix}{name}.", depth + 1)]
        return ([""] if depth == 0 else []) + comment + head + [f"{indent}{name}:"] + body
    return comment + [f"{indent}{name}: {_scalar(value)}"]


def _scalar(value: Any) -> str:
    plain = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    if isinstance(plain, tuple):
        plain = list(plain)
    if isinstance(plain, dict):
        plain = {k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in plain.items()}
    return yaml.safe_dump(plain, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _choices(annotation: Any) -> tuple | None:
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    for arg in typing.get_args(annotation):  # Optional[Literal[...]]
        if typing.get_origin(arg) is typing.Literal:
            return typing.get_args(arg)
    return None
