"""The GPU decode mode's batches through Ray Data: ragged need columns and the JPEG column's nulls survive."""

from __future__ import annotations

import pytest


def _rows(staged: dict) -> list[dict]:
    """One item per row; captions as "" where None (the score phase's reader never yields a null caption)."""
    return [{k: (staged[k][i] if staged[k][i] is not None else "") for k in staged}
            for i in range(len(staged["image"]))]


@pytest.mark.slow
@pytest.mark.parametrize("mode", [{"device": "gpu"}, {"resize": "gpu"}])
def test_gpu_decode_mode_survives_ray_data_blocks(ray_session, staged, tiny_clip, mode):
    """Ragged need columns, the JPEG column's nulls and its bytes (GPU decode), the RGB images of every size
    (resize on the GPU) go through Ray Data's blocks and back."""
    import numpy as np
    import ray

    from filters.clip import ClipScorer
    from manifests import schema as col
    from manifests.decode import decode_batch, plan_decode

    clip = tiny_clip.model_copy(update={"device": "cpu"})
    plan_gpu = plan_decode([ClipScorer.needs(clip)], **mode)
    rows = _rows(staged)
    ds = ray.data.from_items(rows).map_batches(decode_batch, fn_args=(plan_gpu,), batch_format="numpy", batch_size=3)
    out = ds.map_batches(ClipScorer, fn_constructor_args=(clip,), batch_format="numpy", num_cpus=0.25,
                         compute=ray.data.ActorPoolStrategy(size=1)).take_all()
    scores = {r[col.SAMPLE_ID]: r[col.CLIP_SCORE] for r in out}
    direct = ClipScorer(clip)(decode_batch(dict(staged), plan_gpu))
    for sample_id, value in zip(staged[col.SAMPLE_ID], direct[col.CLIP_SCORE]):
        assert (np.isnan(value) and np.isnan(scores[sample_id])) or scores[sample_id] == pytest.approx(value, abs=1e-5)


@pytest.mark.slow
def test_images_of_different_sizes_meet_in_one_batch(ray_session, staged):
    """Blocks whose RGB arrays differ in shape are concatenated into one ragged column, each array intact."""
    import numpy as np
    import ray

    from manifests import schema as col
    from manifests.decode import decode_batch, plan_decode
    from manifests.images import DECODED, RgbArray, decode_rgb

    need = RgbArray()
    rows = _rows(staged)

    def shapes(batch: dict) -> dict:
        return {col.SAMPLE_ID: batch[col.SAMPLE_ID],
                "shape": np.array([str(tuple(a.shape)) if ok else "-"
                                   for a, ok in zip(batch[need.column], batch[DECODED])])}

    ds = ray.data.from_items(rows).map_batches(decode_batch, fn_args=(plan_decode([(need,)]),), batch_format="numpy")
    out = ds.map_batches(shapes, batch_size=len(rows), batch_format="numpy").take_all()
    got = {r[col.SAMPLE_ID]: r["shape"] for r in out}
    images = [decode_rgb(b) for b in staged[col.IMAGE]]
    assert len({s for s in got.values()}) > 2
    assert got == {s: str((img.height, img.width, 3)) if img else "-" for s, img in zip(staged[col.SAMPLE_ID], images)}
