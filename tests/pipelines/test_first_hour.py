"""A new user's first hour without Ray: bad inputs end in one line and exit 2 before anything starts,
``thresher config`` prints a config that validates, and CPU requests are scaled to fit a local cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import typing

import pytest
import yaml
from pydantic import BaseModel

from pipelines.cli.configdoc import default_config, render
from pipelines.cli.main import main
from pipelines.config import ConfigError, RunConfig, build_config, load_config
from pipelines.run.cluster import Pool, stage_pools
from pipelines.run.cpufit import fit_cpus, scaled_cpus, with_cpus
from pipelines.run.stages import score_stages

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(tmp_path, **input_fields) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "run"), "input": input_fields}))
    return str(path)


def _stray_quote(rows: int = 200, at: int = 10) -> bytes:
    """The issue's list: row 11 (1-based) opens a quote it never closes."""
    lines = [f"http://x.invalid/{i}.jpg,a caption for image {i}" for i in range(rows)]
    lines[at] = f'http://x.invalid/{at}.jpg,"a caption that opens a quote'
    return ("url,caption\n" + "\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("make, extra, message", [
    (_stray_quote(), {}, "line 12: a quote opened in this row is never closed"),
    (None, {}, "does not exist"),
    (b"", {}, "is empty (0 bytes)"),
    (b"url,caption\n", {}, "has no rows (a header only)"),
    (b"link,text\nhttp://x.invalid/a.jpg,a cat\n", {}, "input.url_col: "),
    (b"url,caption\nhttp://x.invalid/a.jpg,a cat\n", {"extra_cols": ["license"]}, "input.extra_cols: "),
])
def test_bad_inputs_end_in_one_line_and_exit_2_with_no_run_directory(tmp_path, capsys, make, extra, message):
    if make is not None:
        (tmp_path / "urls.csv").write_bytes(make)
    code = main(["run", _config(tmp_path, path=str(tmp_path / "urls.csv"), **extra)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and str(tmp_path / "urls.csv") in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_the_exit_code_is_2_from_the_command_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO}
    out = subprocess.run([sys.executable, "-m", "pipelines", "ingest", _config(tmp_path, path=str(tmp_path / "x.txt"))],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("thresher: input.path: ")


@pytest.mark.parametrize("text, where, message", [
    ("output_dir: run\ninput:\n\tpath: urls.csv\n", ":3:1: ", "a tab character; YAML indents with spaces only"),
    ("output_dir: run\ninput: {path: urls.csv\n", ":3:1: ", "YAML syntax error (expected ',' or '}'"),
    ("output_dir: run\ninput:\n  path: urls.csv\n kind: url_list\n", ":4:2: ", "YAML syntax error"),
])
def test_a_yaml_syntax_error_is_one_line_naming_file_line_and_column(tmp_path, capsys, text, where, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    code = main(["run", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"thresher: {path}{where}") and message in err


def test_an_output_dir_that_is_a_file_is_one_line_before_anything_is_written(tmp_path, capsys):
    (tmp_path / "urls.csv").write_bytes(b"url,caption\nhttp://x.invalid/a.jpg,a cat\n")
    taken = tmp_path / "run"
    taken.write_text("not a folder")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"output_dir": str(taken), "input": {"path": str(tmp_path / "urls.csv")}}))
    for output_dir in (taken, taken / "inner"):
        code = main(["ingest", str(config), "--set", f"output_dir={output_dir}"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert f"output_dir: {output_dir} " in err and "a file, not a folder" in err
    assert taken.read_text() == "not a folder"


@pytest.mark.slow
def test_a_ray_that_cannot_start_is_one_line_with_a_retry_hint_and_leaves_no_run_directory(tmp_path):
    """A GCS that never comes up (an unknown storage backend makes gcs_server exit at once) is what
    ``ray.init`` reports when another Ray is starting beside it: RuntimeError after its retries."""
    (tmp_path / "urls.csv").write_bytes(b"url,caption\nhttp://x.invalid/a.jpg,a cat\n")
    env = {**os.environ, "PYTHONPATH": REPO, "RAY_gcs_storage": "bogus", "RAY_gcs_server_port_wait_time_s": "3"}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run([sys.executable, "-m", "pipelines", "run", _config(tmp_path, path=str(tmp_path / "urls.csv"))],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("thresher: the local Ray did not start ("), out.stderr
    assert "retry in a minute" in out.stderr and "no run directory was left" in out.stderr
    assert not (tmp_path / "run").exists()


def test_every_way_ray_init_reports_a_node_that_did_not_start_is_one_line():
    from pipelines.run.runtime import is_start_failure, start_failure

    overloaded = Exception("The current node timed out during startup. This could happen because some of the "
                           "raylet failed to startup or the GCS has become overloaded.\n")  # ray/_private/node.py
    gcs = RuntimeError("Failed to start GCS.  Last 1 lines of error files:\n[E] boom\n.Please check "
                       "/tmp/ray/session_2026-01-01_00-00-00_1_2/logs/gcs_server.out for details.")
    for exc in (overloaded, gcs, ConnectionError("Could not find any running Ray instance.")):
        assert is_start_failure(exc)
        line = start_failure(exc, None)
        assert "\n" not in line and "retry in a minute" in line and str(exc).splitlines()[0] in line
    assert "/tmp/ray/session_2026-01-01_00-00-00_1_2/logs" in start_failure(gcs, None)
    assert "could not join the Ray cluster at ray://x:10001" in start_failure(gcs, "ray://x:10001")
    assert not is_start_failure(TypeError("a bug")) and not is_start_failure(KeyError("a bug"))


@pytest.mark.parametrize("full", [False, True])
def test_config_command_prints_a_config_that_validates_as_it_is(full, capsys):
    assert main(["config"] + (["--full"] if full else [])) == 0
    text = capsys.readouterr().out
    assert build_config(yaml.safe_load(text)) == default_config()
    assert "# REQUIRED" in text and "one of: url_list, webdataset, folder" in text
    names = [line.split(":")[0].strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert ("decode_threads" in names) == full and "min_shards" in names


def test_full_config_names_every_field(tmp_path):
    (tmp_path / "c.yaml").write_text(render(full=True))
    dumped = default_config().model_dump(mode="json")

    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and v and k not in ("stages",):
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"
    text = (tmp_path / "c.yaml").read_text()
    for leaf in leaves(dumped):
        assert f" {leaf.rsplit('.', 1)[-1]}:" in text or text.startswith(leaf) or f"\n{leaf}:" in text, leaf
    assert load_config(tmp_path / "c.yaml") == default_config()


def _config_models(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[type[BaseModel]]:
    """``model`` and every model its fields can hold (nested, in a tuple, a dict's values, an Optional)."""
    def inner(annotation):
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield annotation
        for arg in typing.get_args(annotation):
            yield from inner(arg)

    seen.add(model)
    for info in model.model_fields.values():
        for sub in inner(info.annotation):
            if sub not in seen:
                _config_models(sub, seen)
    return seen


def test_every_config_field_has_a_description_for_the_printed_comment():
    models = _config_models(RunConfig, set())
    undocumented = [f"{m.__module__}.{m.__name__}.{name}" for m in models
                    for name, info in m.model_fields.items() if not (info.description or "").strip()]
    assert len(models) > 20 and not undocumented, f"give these a Field(description=...): {undocumented}"
    lines = render(full=True).splitlines()
    fields = [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    assert all(lines[i - 1].lstrip().startswith("#") for i in fields)  # each printed field has its comment


def test_scaled_cpus_fit_with_one_factor():
    assert scaled_cpus({"a": 1, "b": 1, "c": 1}, cpus=2, fixed=0.5) == {"a": 0.5, "b": 0.5, "c": 0.5}
    assert scaled_cpus({"a": 0.5, "b": 0.5}, cpus=2, fixed=0.5) == {}  # fits already
    assert scaled_cpus({"a": 1}, cpus=0.5, fixed=0.5) == {}  # cannot fit: the cluster check explains


def test_fit_cpus_scales_stage_requests_and_says_so(tmp_path):
    config = build_config({"output_dir": str(tmp_path), "input": {"path": "x.parquet"},
                           "dedup": {"phash": {"enabled": True}, "minhash": {"enabled": True},
                                     "exact": {"enabled": True}},
                           "resources": {"stages": {"phash": {"num_cpus": 2, "num_gpus": 0}}}})
    scaled, warnings = fit_cpus({"score": stage_pools(score_stages(config))}, cpus=2)
    fitted = with_cpus(config.resources, scaled)
    asks = {name: fitted.for_stage(name).num_cpus for name in fitted.stages}
    assert warnings and "score: " in warnings[0] and "resources.stages.phash.num_cpus 2 ->" in warnings[0]
    assert sum(asks.values()) + 0.5 <= 2
    refitted = config.model_copy(update={"resources": fitted})
    assert fit_cpus({"score": stage_pools(score_stages(refitted))}, cpus=2)[1] == []  # idempotent
    gpu = build_config({"output_dir": str(tmp_path), "input": {"path": "x.parquet"},
                        "resources": {"ingest": {"num_gpus": 1, "num_cpus": 4}}})
    scaled, _ = fit_cpus({"ingest": [Pool("resources.ingest", gpu.resources.ingest)]}, cpus=2)
    assert with_cpus(gpu.resources, scaled).ingest.num_gpus == 1  # never scaled: the cluster check fails it


def test_config_errors_still_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="export.min_shards"):
        build_config({"output_dir": "x", "input": {"path": "y"}, "export": {"min_shards": 0}})


@pytest.mark.slow
def test_the_demo_prints_under_60_lines_and_logs_the_rest(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    out = subprocess.run([sys.executable, "-m", "pipelines", "demo", "--out", str(tmp_path / "demo"), "--samples", "40"],
                         capture_output=True, env=env, timeout=900)  # bytes: text mode would turn each \r into a line
    printed = (out.stdout + out.stderr).decode("utf-8", "replace")
    assert out.returncode == 0, printed[-3000:]
    lines = printed.count("\n")  # a progress bar redraws its line with \r: one line on a terminal
    assert lines < 60, printed
    assert "Thresher run:" in out.stdout.decode() and "Traceback" not in printed
    log = (tmp_path / "demo" / "run" / "logs" / "thresher.log").read_text()
    assert "ray.data" in log  # Ray Data's plan and operator lines went to the file
    assert "ray/issues/53727" in log and "53727" not in printed  # the C++ core worker's noise too


@pytest.mark.slow
def test_the_commands_tune_suggests_make_its_overrides_act(ray_session, tmp_path, capsys):
    """A run without the nsfw stage and the exact detector: tune notes both, and each command it names,
    run as printed, makes the override act (the note is gone, the column and the pairs are there)."""
    import polars as pl

    from manifests.layout import RunLayout
    from pipelines.cli.corpus import build_corpus
    from pipelines.cli.demo import serve_files, write_url_list
    from pipelines.run.driver import run
    from pipelines.tools.commands import run_tune

    files, rows = build_corpus(samples=40, seed=3)
    rows = rows[:40]  # the corpus never has fewer than its 162 base rows; four photos and their copies do here
    with serve_files(files) as base_url:
        data = {"output_dir": str(tmp_path / "run"),
                "input": {"kind": "url_list", "path": str(write_url_list(rows, base_url, tmp_path / "urls.parquet"))},
                "crawl": {"allow_private_addresses": True, "retries": 1, "image_size": 128},
                "dedup": {"exact": {"enabled": False}},
                "resources": {"ingest": {"concurrency": 1}, "export": {"concurrency": 1}}}
        run(build_config(data))
    root = tmp_path / "run"
    overrides = ["dedup.exact.enabled=true", "filters.nsfw.max_prob=0.5"]
    notes = [line for line in run_tune(root, overrides)[1].splitlines() if line.startswith("note: ")]
    assert len(notes) == 2 and all(n.endswith(", then tune again") for n in notes), notes
    for note in notes:
        command = note.split(": ")[-1].removesuffix(", then tune again").split()
        assert command[:3] == ["thresher", "run", str(root)]
        assert main(command[1:]) == 0
    capsys.readouterr()
    text = run_tune(root, overrides)[1]
    assert "note:" not in text, text
    assert col_present(root, "nsfw_prob")
    scored = pl.scan_parquet([str(f) for f in RunLayout.at(root).score_files()]).collect_schema().names()
    assert "pixel_hash" in scored and load_config(root).dedup.exact.enabled  # the exact detector's input, and it ran


def col_present(root, column: str) -> bool:
    import polars as pl

    return column in pl.scan_parquet(str(root / "manifest" / "*.parquet")).collect_schema().names()
