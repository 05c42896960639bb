"""A real two-node Ray cluster in two network namespaces joined by a veth pair, running the demo corpus.

Ray refuses a multi-node cluster on loopback, so each node gets its own namespace with an address in
a private /24 that exists only between them; nothing leaves the namespaces. The second node carries
a custom resource standing in for a GPU node, and the open_nsfw stage asks for it, so it must run there.
The score stages are the ones ``thresher run`` builds from the config (driver.py): decode, open_nsfw, OCR,
lingua and pHash, real and offline.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest

from driver import NSFW_ACTOR, corpus
from scaleout_support import (check_complete_run, check_same_dataset, node_env, processes_named, start_driver,
                              tiny_captioner, wait_until)
from manifests import schema as col
from manifests.layout import PHASE_NAMES, RunLayout

pytestmark = pytest.mark.slow

HEAD_IP, WORKER_IP, PREFIX = "10.213.47.1", "10.213.47.2", 24
RAY_PORT, DASHBOARD_PORT = 6390, 8290
RAY = str(Path(os.sys.executable).with_name("ray"))


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _kill_namespace(name: str) -> None:
    """Kill the processes this test started inside ``name`` (Ray nodes), then remove the namespace."""
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), 9)
        except ProcessLookupError:
            pass
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def namespaces():
    """Two namespaces joined by a veth pair; yields (head, worker, Ray temp dir) and removes them after."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (`ip`) is not installed")
    if os.geteuid() != 0:
        pytest.skip("creating network namespaces needs root")
    tag = f"{os.getpid() % 100000}"
    head, worker = f"thr-head-{tag}", f"thr-work-{tag}"
    try:
        _ip("netns", "add", head)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc.stderr.strip()}")
    try:
        _ip("netns", "add", worker)
        _ip("link", "add", f"thh{tag}", "type", "veth", "peer", "name", f"thw{tag}")
        for ns, dev, addr in ((head, f"thh{tag}", HEAD_IP), (worker, f"thw{tag}", WORKER_IP)):
            _ip("link", "set", dev, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{addr}/{PREFIX}", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        temp_dir = tempfile.mkdtemp(prefix="thr-ray-")  # short: Ray's socket paths must fit in 107 bytes
        yield head, worker, temp_dir
    finally:
        _kill_namespace(worker)
        _kill_namespace(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _ray_start(ns: str, env: dict, *args: str) -> None:
    done = subprocess.run(["ip", "netns", "exec", ns, RAY, "start", "--disable-usage-stats", *args],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _pids_in(ns: str) -> list[int]:
    """The processes of network namespace ``ns`` (what ``ip netns pids`` lists): a scan of /proc, quick enough
    to poll every few milliseconds."""
    inode, found = os.stat(f"/run/netns/{ns}").st_ino, []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and os.stat(f"/proc/{pid}/ns/net").st_ino == inode:
                found.append(int(pid))
        except OSError:  # exited while we looked
            continue
    return found


def _processes_in(ns: str) -> list:
    import psutil

    procs = []
    for pid in _pids_in(ns):
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    return procs


def _wait_watching(driver: subprocess.Popen, namespaces: tuple[str, ...], name: str,
                   timeout_s: float = 400) -> dict[str, set[int]]:
    """Wait for ``driver``, noting in which namespace (node) a process titled ``name`` runs meanwhile."""
    seen: dict[str, set[int]] = {ns: set() for ns in namespaces}
    deadline = time.monotonic() + timeout_s
    while driver.poll() is None and time.monotonic() < deadline:
        for ns in namespaces:
            seen[ns].update(p.pid for p in processes_named(_processes_in(ns), name))
        time.sleep(0.3)
    assert driver.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, "the run failed; see its driver log"
    return seen


def _start_cluster(namespaces: tuple[str, str, str]) -> dict[str, str]:
    """The head (2 CPUs, the job server) and the worker node (1 CPU and ``gpu_node``); returns their environment."""
    head, worker, temp_dir = namespaces
    # Token auth with a token of this test only: independent of ~/.ray, and the cluster is not open.
    env = {**node_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")  # the loopback-only guard of a local Ray; this one is two nodes
    _ray_start(head, env, "--head", f"--node-ip-address={HEAD_IP}", f"--port={RAY_PORT}", "--num-cpus=2",
               "--include-dashboard=true", f"--dashboard-host={HEAD_IP}", f"--dashboard-port={DASHBOARD_PORT}",
               f"--temp-dir={temp_dir}")
    _join_worker(worker, env)
    return env


def _join_worker(worker: str, env: dict[str, str]) -> None:
    _ray_start(worker, env, f"--address={HEAD_IP}:{RAY_PORT}", f"--node-ip-address={WORKER_IP}", "--num-cpus=1",
               '--resources={"gpu_node": 1}')


def test_demo_corpus_runs_on_a_two_node_cluster(namespaces, tmp_path: Path) -> None:
    head, worker, _ = namespaces
    env = _start_cluster(namespaces)

    # Submitted as a Ray job: the job server on the head runs the driver there (inside the head namespace).
    work = tmp_path / "work"
    submit = ("ip", "netns", "exec", head, RAY, "job", "submit", f"--address=http://{HEAD_IP}:{DASHBOARD_PORT}", "--")
    driver = start_driver(work, 18610, "--host", HEAD_IP,
                          "--set", "resources.stages.nsfw.resources={gpu_node: 1}",
                          "--set", "resources.ingest.concurrency=3", prefix=submit, env=env)
    actors = _wait_watching(driver, (head, worker), NSFW_ACTOR)
    assert "raysubmit_" in next(work.glob("driver-*.log")).read_text(), "the run did not go through the job server"

    nodes = json.loads((work / "nodes.json").read_text())
    assert sorted(nodes["nodes"].values()) == [HEAD_IP, WORKER_IP]
    assert nodes["nodes"][nodes["driver"]] == HEAD_IP
    assert actors[worker] and not actors[head], "the open_nsfw actors must run on the node with gpu_node only"
    phases = json.loads(RunLayout.at(work / "run").run_json.read_text())["phases"]
    for phase in ("dedup", "decide"):
        used = {nodes["nodes"][n] for n in phases[phase]["task_nodes"]}
        assert used == {HEAD_IP, WORKER_IP}, f"{phase} tasks did not use both nodes"
    manifest = check_complete_run(RunLayout.at(work / "run").root, len(corpus()[1]))
    scored = manifest.filter(pl.col(col.STATUS) == "success")
    for name in (col.NSFW_PROB, col.TEXT_AREA_FRAC, col.OCR_TEXT, col.CAPTION_LANG, col.PHASH):
        assert scored[name].null_count() == 0, name


# The driver run on the head directly (not through the job server), so a test sees its exit code.
CLUSTER_RUN = ("--host", HEAD_IP, "--address", f"{HEAD_IP}:{RAY_PORT}",
               "--set", "resources.stages.nsfw.resources={gpu_node: 1}", "--set", "ray.lost_node_wait_s=10")


def _nsfw_mid_batch(worker: str) -> bool:
    """An open_nsfw actor on the worker node is running a batch (Ray appends ``.submit`` to its title then)."""
    import psutil

    for proc in processes_named(_processes_in(worker), NSFW_ACTOR):
        try:
            if ".submit" in " ".join(proc.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


def _fault_free_then_started(namespaces, tmp_path: Path, port: int, *extra: str):
    """The cluster, a fault-free run of the demo corpus to compare with, then the run a fault will hit, started
    (both with ``extra`` arguments): returns (its driver, its layout, the cluster's environment)."""
    head, _, _ = namespaces
    env = _start_cluster(namespaces)
    on_head = ("ip", "netns", "exec", head)
    reference = start_driver(tmp_path / "fault-free", port, *CLUSTER_RUN, *extra, prefix=on_head, env=env)
    assert reference.wait(timeout=400) == 0, "the fault-free run failed; see its driver log"
    work = tmp_path / "work"
    return start_driver(work, port, *CLUSTER_RUN, *extra, prefix=on_head, env=env), RunLayout.at(work / "run"), env


def _lose_node(ns: str) -> None:
    """Kill the node's raylet, its workers and agents: a lost machine."""
    import psutil

    for proc in _processes_in(ns):
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.mark.faults
def test_the_gpu_node_killed_mid_score_ends_in_one_line_and_a_rerun_on_a_new_node_ends_in_the_fault_free_dataset(
        namespaces, tmp_path: Path) -> None:
    """Fault cell "a worker node killed": its raylet and workers, mid-score, while it runs open_nsfw. Ray retries
    the tasks and restarts the actors on the head, but open_nsfw asks for ``gpu_node``, which only the lost node
    had: Ray would keep its actors pending forever, so the driver ends in one line (NodeLost) after
    ``ray.lost_node_wait_s``; a new worker node joins, and the same command finishes the run, scoring only the
    units not committed before, with the fault-free run's dataset."""
    head, worker, _ = namespaces
    on_head = ("ip", "netns", "exec", head)
    driver, layout, env = _fault_free_then_started(namespaces, tmp_path, 18611)
    work = layout.root.parent
    wait_until(lambda: _nsfw_mid_batch(worker), driver, timeout_s=300)
    _lose_node(worker)
    assert driver.wait(timeout=300) != 0
    log = max(work.glob("driver-*.log"), key=lambda p: p.stat().st_mtime).read_text()
    assert "NodeLost: a node left the cluster during score" in log and "gpu_node" in log, log[-3000:]
    assert not layout.is_done("score")
    scored_before = {p.name: p.stat().st_mtime_ns for p in layout.score_files()}

    _join_worker(worker, env)  # a new node with the resource joins
    again = start_driver(work, 18611, *CLUSTER_RUN, prefix=on_head, env=env)
    assert again.wait(timeout=400) == 0, "the rerun failed; see its driver log"
    check_same_dataset(layout, RunLayout.at(tmp_path / "fault-free" / "run"))
    units = len(layout.staged_tars())
    assert json.loads(layout.run_json.read_text())["phases"]["score"]["units_run"] == units - len(scored_before)
    for path in layout.score_files():  # committed before the fault: kept, not redone
        if path.name in scored_before:
            assert path.stat().st_mtime_ns == scored_before[path.name]
    print(f"work redone: {units - len(scored_before)} of {units} score units, those not committed before the kill; "
          f"the {len(scored_before)} committed kept")  # the fault matrix's "work redone" (bench/fault_matrix.py)


# Ray titles a worker process ``ray::<function>`` while it runs a task and ``ray::IDLE`` after it has sent the
# result back; dedup's and decide's tasks all run through pipelines.run.tasks.RayTasks, whose function is this.
RAY_TASK = "ray::_located"


def _titled(ns: str, title: str) -> list[int]:
    """Processes of the namespace whose command line (Ray's process title) holds ``title``."""
    found = []
    for pid in _pids_in(ns):
        try:
            if title in _cmdline(pid):
                found.append(pid)
        except OSError:  # exited while we looked
            continue
    return found


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace")


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")


def _freeze_in_flight(worker: str, phase: str, layout: RunLayout, title: str = RAY_TASK, busy: str = RAY_TASK):
    """The moment to lose the worker node mid-``phase``, observed from outside: the phase before it is done and a
    process on the node titled ``title`` is running a task of it (its title holds ``busy``: ``RAY_TASK`` for a
    task; an actor's process, ``ray::MapWorker(...Class)``, appends ``.submit`` while it runs a call). That
    process is stopped (SIGSTOP) and looked at again: still so titled, it has not sent its result, so the task is
    in flight on the node and Ray must run it again elsewhere; the check is then true and the node is to be
    killed. A task that ended in between is let go on. Fails at once if the phase ends before one is caught."""
    before = PHASE_NAMES[PHASE_NAMES.index(phase) - 1]

    def check() -> bool:
        if not layout.is_done(before):
            return False
        assert not layout.is_done(phase), f"{phase} ended before a task of it was caught on the worker node"
        for pid in _titled(worker, title):
            try:
                if busy not in _cmdline(pid):
                    continue
                os.kill(pid, signal.SIGSTOP)
                while not _stopped(pid):
                    time.sleep(0.001)
                if busy in _cmdline(pid):
                    return True
                os.kill(pid, signal.SIGCONT)
            except OSError:
                continue
        return False

    return check


# Each phase's files, by folder under the run directory: what "committed before the kill" is checked against.
PHASE_TOPS = {"ingest": ("ingest",), "score": ("score",), "dedup": ("dedup",), "decide": ("decide",),
              "caption": ("caption",), "export": ("shards", "manifest", "manifest.parquet")}


def _files(layout: RunLayout) -> dict[str, int]:
    """Path (relative to the run) -> mtime of every file under a final name; a temporary export shard folder's
    files under shards/, where export renames the folder whole (a rename keeps the mtimes)."""
    found = {}
    for folder, _, names in os.walk(layout.root):
        rel = Path(folder).relative_to(layout.root)
        if rel.parts and rel.parts[0].startswith(".shards."):
            rel = Path("shards", *rel.parts[1:])
        elif any(part.startswith(".") for part in rel.parts):
            continue  # another temporary folder: not committed
        for name in names:
            if name.startswith("."):
                continue  # a file being written under a temporary name
            try:
                found[(rel / name).as_posix()] = os.stat(Path(folder, name)).st_mtime_ns
            except FileNotFoundError:
                continue
    return found


def _work_of(rel: str) -> str:
    """The unit of work that wrote a file: its folder (two levels deep) and stem, a shard's files one
    (NNNNN.tar, NNNNN.parquet, NNNNN_stats.json), a dedup group's duplicates parts of every unit one."""
    parts = rel.split("/")
    folder = "/".join(parts[:2]) if len(parts) > 2 else parts[0]
    if folder.startswith("dedup/duplicates"):
        folder = "dedup/duplicates"
    return f"{folder}:{parts[-1].split('.')[0].removesuffix('_stats')}"


def _at_the_kill(layout: RunLayout) -> tuple[dict[str, int], dict]:
    return _files(layout), json.loads(layout.run_json.read_text()).get("phases", {})  # none yet in ingest


def _counts(record: dict) -> dict:
    """A phase's run.json record without what differs between two runs of the same input: times, bytes of
    shuffle files, the nodes, the inputs (paths) and the output's name."""
    return {k: _counts(v) if isinstance(v, dict) else v for k, v in record.items()
            if not k.endswith(("wall_s", "bytes")) and k not in ("task_nodes", "inputs", "output")}


def _check_work_redone(layout: RunLayout, reference: RunLayout, phase: str, at_kill: tuple[dict[str, int], dict],
                       in_flight: int) -> list[str]:
    """What a node lost mid-``phase`` made the run redo, from its files and run.json: the phases done before the
    kill are not run again (their run.json records and files, _DONE markers included, unchanged); of the
    ``phase`` files committed before the kill, only those of the ``in_flight`` units of work the lost node was
    running are written again; run.json records ``phase`` as the fault-free run does, bar times and nodes.
    Returns the units of work written again."""
    files, phases = at_kill
    after, now = _files(layout), json.loads(layout.run_json.read_text())["phases"]
    for done in PHASE_NAMES[:PHASE_NAMES.index(phase)]:
        assert now[done] == phases[done], f"{done}, done before the kill, ran again"
        for rel, mtime in files.items():
            if rel.split("/")[0] in PHASE_TOPS[done]:
                assert after.get(rel) == mtime, f"{rel}, committed by {done} before the kill, was removed or rewritten"
    mine = {rel: mtime for rel, mtime in files.items() if rel.split("/")[0] in PHASE_TOPS[phase]}
    rewritten = sorted({_work_of(rel) for rel, mtime in mine.items() if after.get(rel, mtime) != mtime})
    assert len(rewritten) <= in_flight, f"{phase} redid {rewritten}, more than the {in_flight} in flight on the node"
    expected = json.loads(reference.run_json.read_text())["phases"][phase]
    assert _counts(now[phase]) == _counts(expected), (now[phase], expected)
    units = len({_work_of(rel) for rel in mine})
    running = "task" if phase in ("dedup", "decide") else f"{ACTORS[phase]} actor"
    # The fault matrix's "work redone" (bench/fault_matrix.py reads this line).
    earlier = ", ".join(PHASE_NAMES[:PHASE_NAMES.index(phase)])
    print(f"work redone: {in_flight} {running}(s) in flight on the lost node; {len(rewritten)} of {units} {phase} "
          f"outputs committed before the kill rewritten{': ' + ', '.join(rewritten) if rewritten else ''}"
          f"{'; ' + earlier + ' not re-run' if earlier else ''}")
    return rewritten


@pytest.mark.faults
def test_a_worker_node_killed_mid_dedup_is_survived_by_itself_and_the_run_ends_in_the_fault_free_dataset(
        namespaces, tmp_path: Path) -> None:
    """Fault cell "a worker node killed" where no pool needs what only that node had: once score is done, the
    worker node (its raylet, workers and agents) is killed while a dedup task runs on it (caught in flight, see
    ``_freeze_in_flight``). Ray retries the lost task on the head; the same driver finishes, with the
    fault-free run's dataset, having redone at most that task: ingest and score not again, no dedup file
    committed before the kill written again but the lost task's."""
    _, worker, _ = namespaces
    driver, layout, _ = _fault_free_then_started(namespaces, tmp_path, 18612)
    wait_until(_freeze_in_flight(worker, "dedup", layout), driver, timeout_s=400, poll_s=0.002)
    at_kill = _at_the_kill(layout)
    _lose_node(worker)
    assert driver.wait(timeout=400) == 0, "the run did not survive the lost node; see its driver log"
    reference = RunLayout.at(tmp_path / "fault-free" / "run")
    check_same_dataset(layout, reference)
    _check_work_redone(layout, reference, "dedup", at_kill, in_flight=1)


@pytest.fixture(scope="module")
def captioner(tmp_path_factory) -> tuple[str, ...]:
    """Driver arguments of a tiny random BLIP-2 captioner (saved once; each node reads it from the shared disk),
    so the caption phase does real work and the shards carry its captions."""
    overrides = tiny_captioner(tmp_path_factory.mktemp("tiny-blip2"))
    return tuple(arg for o in overrides for arg in ("--set", o))


# The actors of a phase's pool, by the class Ray titles their processes after.
ACTORS = {"ingest": "IngestWorker", "caption": "Blip2Captioner", "export": "ExportWorker"}


def _in_flight(phase: str, layout: RunLayout, worker: str):
    """The moment to lose the worker node mid-``phase``: the phase before it is done and the phase has begun its
    work (a unit staged while an ingest actor runs on the worker; decide, export: a task or an actor's call of
    it caught in flight on the worker, then stopped)."""
    if phase == "decide":
        return _freeze_in_flight(worker, phase, layout)
    if phase == "export":
        return _freeze_in_flight(worker, phase, layout, ACTORS[phase], ".submit")
    before = PHASE_NAMES[PHASE_NAMES.index(phase) - 1] if phase != "ingest" else None
    started = {
        "ingest": lambda: bool(layout.staged_row_files()) and bool(processes_named(_processes_in(worker),
                                                                                   ACTORS["ingest"])),
    }[phase]
    return lambda: (before is None or layout.is_done(before)) and started()


def _captioned_once(layout: RunLayout) -> None:
    """Every caption row is of a distinct kept row, as many as run.json says the phase captioned: no batch
    that a lost actor had finished was kept twice."""
    ids = pl.scan_parquet(str(layout.captions_dir / "**" / "*.parquet"), hive_partitioning=False) \
        .select(col.SAMPLE_ID).collect()[col.SAMPLE_ID]
    assert ids.n_unique() == ids.len()
    assert ids.len() == json.loads(layout.run_json.read_text())["phases"]["caption"]["rows_captioned"]


@pytest.mark.faults
@pytest.mark.parametrize("phase", ["decide", "export", "ingest"])
def test_a_worker_node_killed_mid_phase_is_survived_by_itself_and_the_run_ends_in_the_fault_free_dataset(
        namespaces, tmp_path: Path, captioner: tuple[str, ...], phase: str) -> None:
    """Fault cell "a worker node killed" where no pool needs what only that node had (after score, whose open_nsfw
    pool asks for ``gpu_node``; in ingest, with open_nsfw asking for nothing): the worker node (its raylet,
    workers and agents) is killed while the phase runs on both nodes (decide's tasks take 0.1 s: one is caught
    running on the worker and stopped there, so the node is lost with it in flight; export's actor calls the
    same way). Ray retries the lost tasks
    and restarts the lost actors on the head; the same driver finishes, with the fault-free run's dataset (a tiny
    BLIP-2 captioner in both runs), having redone at most the units of work in flight on the lost node (one
    task; one unit or shard per actor it ran): no earlier phase again, no file of the phase committed before the
    kill written again but theirs, and run.json records the phase as the fault-free run does."""
    _, worker, _ = namespaces
    extra = captioner
    if phase == "ingest":  # ingest actors on both nodes, each URL answered in 1.5 s so a unit takes seconds;
        # open_nsfw on any node, so that score needs nothing the lost node alone had
        extra += ("--fetch-delay", "1.5", "--set", "resources.ingest.concurrency=3",
                  "--set", "resources.stages.nsfw.resources={}")
    driver, layout, _ = _fault_free_then_started(namespaces, tmp_path, 18613, *extra)
    caught = phase in ("decide", "export")  # one task or actor call caught in flight and stopped
    wait_until(_in_flight(phase, layout, worker), driver, timeout_s=400, poll_s=0.002 if caught else 0.01)
    at_kill = _at_the_kill(layout)
    in_flight = 1 if caught else len(processes_named(_processes_in(worker), ACTORS[phase]))
    _lose_node(worker)
    assert not layout.is_done(phase), f"the kill should land in the middle of {phase}"
    assert driver.wait(timeout=400) == 0, "the run did not survive the lost node; see its driver log"
    reference = RunLayout.at(tmp_path / "fault-free" / "run")
    check_same_dataset(layout, reference)
    _check_work_redone(layout, reference, phase, at_kill, in_flight)


@pytest.mark.faults
def test_the_captioner_node_killed_mid_batch_is_survived_once_a_new_node_joins_and_the_run_ends_in_the_fault_free_dataset(
        namespaces, tmp_path: Path, captioner: tuple[str, ...]) -> None:
    """Fault cell "a worker node killed" mid-caption: the BLIP-2 captioner asks for ``gpu_node`` (as a real one asks
    for a GPU), so its actor runs on the worker node, where one of its batches is caught in flight and stopped
    (SIGSTOP) before the node (its raylet, workers and agents) is killed. Ray restarts the actor once a node can
    place it: a new worker node joins within ``ray.lost_node_wait_s`` (as KubeRay replaces a lost pod), and the
    same driver finishes by itself, with the fault-free run's dataset, having redone only the lost actor's
    batches: no earlier phase again, every kept row captioned once."""
    _, worker, _ = namespaces
    on_gpu_node = ("--set", "resources.stages.blip2.resources={gpu_node: 1}", "--set", "ray.lost_node_wait_s=180")
    driver, layout, env = _fault_free_then_started(namespaces, tmp_path, 18614, *captioner, *on_gpu_node)
    wait_until(_freeze_in_flight(worker, "caption", layout, ACTORS["caption"], ".submit"), driver, timeout_s=400,
               poll_s=0.002)
    at_kill = _at_the_kill(layout)
    _lose_node(worker)
    assert not layout.is_done("caption"), "the kill should land in the middle of caption"
    _join_worker(worker, env)  # the replacement node, with the resource the captioner asks for
    assert driver.wait(timeout=400) == 0, "the run did not survive the lost node; see its driver log"
    reference = RunLayout.at(tmp_path / "fault-free" / "run")
    check_same_dataset(layout, reference)
    _check_work_redone(layout, reference, "caption", at_kill, in_flight=1)
    _captioned_once(layout)
