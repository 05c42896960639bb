"""No partial or temporary file is ever visible to a reader: a whole ``thresher run`` (ingest to export, with a
tiny random BLIP-2 captioner) under ``strace -f``, every process Ray starts included. Every file opened for
writing under the run directory has a temporary name (a ``.NAME.….tmp`` component: ``manifests/io.atomic_path``,
``dedup/shuffle._scratch``, the ``.shards.….tmp`` / ``.manifest.….tmp`` / ``.new.….tmp`` folders of export and
caption), and every final name (Parquet parts, ``_DONE``, staged and exported tars, ``run.json``, the manifest,
``config.yaml``) appears only through a rename from a temporary name.

Exempt: the run lock's protocol files (``.lock*``, not data: ``pipelines/run/runlock.py`` links its own file onto
``.lock``) and ``logs/``, an append-only log.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from scaleout_support import free_port, node_env

REPO = Path(__file__).resolve().parents[2]
SYSCALLS = "open,openat,creat,rename,renameat,renameat2,link,linkat"
WRITE_FLAGS = re.compile(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC")
# One strace -ff line: syscall(args) = result; -y annotates fds, AT_FDCWD included, with their paths: 3</a/b>.
LINE = re.compile(r"^(?P<call>\w+)\((?P<args>.*)\)\s+=\s+(?P<result>-?\d+)(?:<(?P<fd_path>[^>]*)>)?")
STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
CWD = re.compile(r"AT_FDCWD<([^>]*)>")


def is_temporary(path: Path, root: Path) -> bool:
    """A temporary name, or a file inside a temporary folder: some component under ``root`` is ``.….tmp``."""
    return any(part.startswith(".") and part.endswith(".tmp") for part in path.relative_to(root).parts)


def is_exempt(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return parts[0].startswith(".lock") or parts[0] == "logs"


@dataclass
class Trace:
    """What a run did under ``root``: the files it opened for writing and its renames (source, target)."""

    root: Path
    written: set[Path] = field(default_factory=set)
    renamed: list[tuple[Path, Path]] = field(default_factory=list)

    def under(self, path: Path) -> bool:
        return path == self.root or self.root in path.parents

    def read(self, lines: list[str]) -> None:
        """The lines of one thread's ``strace -ff -y`` file (one thread: no call is split in two)."""
        cwd = None
        for line in lines:
            match = LINE.match(line)
            if match is None or match["result"].startswith("-"):
                continue  # a signal, an exit, a failed call
            cwd = next(iter(CWD.findall(match["args"])), cwd)
            paths = [Path(os.path.normpath(Path(cwd or "/") / s)) for s in STRING.findall(match["args"])]
            if match["call"] in ("open", "openat", "creat"):
                if match["call"] == "creat" or WRITE_FLAGS.search(match["args"]):
                    path = Path(match["fd_path"]) if match["fd_path"] else paths[0]
                    if self.under(path):
                        self.written.add(path)
            elif len(paths) == 2 and self.under(paths[1]):
                assert cwd is not None or all(s.startswith("/") for s in STRING.findall(match["args"])), line
                self.renamed.append((paths[0], paths[1]))

    def direct_writes(self) -> list[Path]:
        """Files opened for writing under a final name."""
        return sorted(p for p in self.written if not is_temporary(p, self.root) and not is_exempt(p, self.root))

    def renames_from_final_names(self) -> list[tuple[Path, Path]]:
        """Renames onto a final name whose source was not a temporary name."""
        return [(a, b) for a, b in self.renamed if not is_temporary(b, self.root) and not is_exempt(b, self.root)
                and not is_temporary(a, self.root)]

    def never_renamed(self, files: list[Path]) -> list[Path]:
        """Files of the finished run that no rename put in place, neither themselves nor a folder above them."""
        targets = {b for _, b in self.renamed}
        return [p for p in files if not is_exempt(p, self.root) and not (targets & {p, *p.parents})]


def read_traces(prefix: Path, root: Path) -> Trace:
    trace = Trace(root)
    for path in sorted(prefix.parent.glob(f"{prefix.name}.*")):
        trace.read(path.read_text(errors="replace").splitlines())
    return trace


def test_the_trace_check_flags_a_direct_write_and_a_rename_from_a_final_name(tmp_path: Path) -> None:
    root = tmp_path / "run"
    trace = Trace(root)
    trace.read([
        f'openat(AT_FDCWD<{tmp_path}>, "run/score/.00000.parquet.ab12.tmp", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 3'
        f'<{root}/score/.00000.parquet.ab12.tmp>',
        f'rename("{root}/score/.00000.parquet.ab12.tmp", "{root}/score/00000.parquet") = 0',
        f'openat(AT_FDCWD<{tmp_path}>, "run/config.yaml", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0666) = 4'
        f'<{root}/config.yaml>',
        f'openat(AT_FDCWD<{tmp_path}>, "run/run.json", O_RDONLY|O_CLOEXEC) = 5<{root}/run.json>',
        f'openat(AT_FDCWD<{tmp_path}>, "run/logs/thresher.log", O_WRONLY|O_CREAT|O_APPEND, 0666) = 6'
        f'<{root}/logs/thresher.log>',
        f'openat(AT_FDCWD<{tmp_path}>, "run/x.parquet", O_WRONLY|O_CREAT, 0666) = -1 ENOSPC (No space left)',
        'rename("run/shards/00000.tar", "run/shards/00001.tar") = 0',  # relative to the cwd seen above
        f'openat(AT_FDCWD<{tmp_path}>, "/elsewhere/out.bin", O_WRONLY|O_CREAT, 0666) = 7</elsewhere/out.bin>',
    ])
    assert trace.direct_writes() == [root / "config.yaml"]
    assert trace.renames_from_final_names() == [(root / "shards/00000.tar", root / "shards/00001.tar")]
    assert trace.never_renamed([root / "score/00000.parquet", root / "run.json", root / "logs/thresher.log"]) == \
        [root / "run.json"]


@pytest.fixture
def traced_run(tmp_path: Path) -> tuple[Trace, Path]:
    """A finished ``thresher run`` of the scale-out tests' corpus with a tiny BLIP-2 captioner, traced."""
    import torch

    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    probe = subprocess.run(["strace", "-f", "--seccomp-bpf", "-o", os.devnull, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here: {probe.stderr.strip()[:300]}")

    from driver import config_data, corpus
    from pipelines.cli.demo import serve_files, write_url_list
    from support.random_models import save_random

    torch.manual_seed(0)
    blip2 = save_random("blip2", tmp_path / "tiny-blip2")
    files, rows = corpus()
    prefix = tmp_path / "strace" / "trace"
    prefix.parent.mkdir()
    with serve_files(files, port=free_port()) as base_url:
        data = config_data(argparse.Namespace(work=str(tmp_path)), write_url_list(rows, base_url,
                                                                                 tmp_path / "urls.parquet"))
        data["caption"] = {"blip2": {"enabled": True, "model": str(blip2), "generation": {"max_new_tokens": 6}}}
        data["resources"]["stages"]["blip2"] = {"batch_size": 2, "num_cpus": 0.5}
        data["export"]["caption_source"] = "caption_blip2"
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(data))
        strace = ["strace", "-f", "-ff", "--seccomp-bpf", "-y", "-qq", "-e", "signal=none", "-e",
                  f"trace={SYSCALLS}", "-o", str(prefix)]
        done = subprocess.run([*strace, sys.executable, "-m", "pipelines", "run", str(config)], cwd=REPO,
                              env=node_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    root = Path(data["output_dir"])
    return read_traces(prefix, root), root


@pytest.mark.slow
@pytest.mark.faults  # 55-60 s on 2 shared CPUs: bench/fault_matrix.py runs it
def test_no_partial_or_temporary_file_is_ever_visible_to_a_reader(traced_run: tuple[Trace, Path]) -> None:
    trace, root = traced_run
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert trace.written and trace.renamed, "the trace saw no write under the run directory"
    assert {"_DONE", "run.json", "config.yaml"} <= {p.name for p in files}
    assert any(p.suffix == ".tar" for p in (root / "shards").iterdir())
    assert any((root / "caption" / "captions").rglob("*.parquet")), "the captioner wrote nothing"
    assert trace.direct_writes() == [], "files written under their final name"
    assert trace.renames_from_final_names() == [], "final names renamed from a name a reader could see"
    assert trace.never_renamed(files) == [], "final files that no rename put in place"
    assert [p for p in files if is_temporary(p, root)] == [], "temporary files left in the finished run"
