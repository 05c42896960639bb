"""A pool that no live node can place any more ends its phase in one line, after the configured wait; without Ray."""

from __future__ import annotations

import time

import pytest

from pipelines.config import RayConfig, StageResources
from pipelines.run.cluster import Pool
from pipelines.run.nodeloss import NodeLost, unplaceable, watched

NSFW = Pool("resources.stages.nsfw", StageResources(num_cpus=0.5, resources={"gpu_node": 1}))
HEAD = {"CPU": 2.0}
GPU_NODE = {"CPU": 1.0, "gpu_node": 1.0}


def test_a_pool_is_unplaceable_once_the_only_node_with_its_resource_is_gone() -> None:
    assert unplaceable("score", [NSFW], [HEAD, GPU_NODE]) is None
    reason = unplaceable("score", [NSFW], [HEAD])
    assert "resources.stages.nsfw" in reason and "gpu_node=1" in reason and "\n" not in reason


def test_the_phase_ends_in_one_line_after_the_wait_and_not_while_a_node_can_place_it() -> None:
    alive = [HEAD, GPU_NODE]
    config = RayConfig(lost_node_wait_s=0.3)
    with watched("score", [NSFW], config, nodes=lambda: alive, poll_s=0.02):
        time.sleep(0.5)  # every node there: nothing happens
    alive.remove(GPU_NODE)
    start = time.monotonic()
    with pytest.raises(NodeLost) as lost:
        with watched("score", [NSFW], config, nodes=lambda: alive, poll_s=0.02):
            time.sleep(30)  # a blocking wait, as a phase's is: the signal ends it
    assert 0.3 <= time.monotonic() - start < 5
    message = str(lost.value)
    assert "\n" not in message and "during score" in message and "gpu_node" in message
    assert "rerun the same command" in message


def test_with_an_autoscaler_the_phase_waits_for_the_node() -> None:
    with watched("score", [NSFW], RayConfig(autoscaling=True, lost_node_wait_s=0.05), nodes=lambda: [HEAD],
                 poll_s=0.01):
        time.sleep(0.3)
