"""The IVF list join's block products on a torch device: a GPU list-join task (``dedup.partitions.join_gpus``).

``ivfjoin._ListJoin`` compares a list's members with each other and with the list's probers block by
block. On a GPU the list's vectors go to the device once; each block's product, the threshold and the
k-best cut of crowded rows (``ivfjoin.block_hits``) run there, and only the hits come back. The same
code runs on torch's CPU device, which is how it is tested against the numpy path here.
"""

from __future__ import annotations

import numpy as np
import torch

from dedup.ivfjoin import _BLOCK


def device_for(name: str) -> torch.device:
    """``cuda``: this task's GPU (Ray sets CUDA_VISIBLE_DEVICES), or a clear error; ``cpu``: torch on CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("dedup.partitions.join_gpus > 0 but this list-join task sees no CUDA GPU (torch "
                           "cannot use one): give the cluster GPU nodes or set dedup.partitions.join_gpus=0")
    return torch.device(name)


def block_hits(sims: torch.Tensor, threshold: float, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, col) of entries >= threshold, at most the k largest per row: ``ivfjoin.block_hits`` on a device."""
    hit = sims >= threshold
    counts = hit.sum(dim=1)
    heavy = counts > k
    i, j = torch.nonzero(hit & ~heavy[:, None], as_tuple=True)
    if bool(heavy.any()):  # keep each crowded row's k best: all reach the threshold
        rows = torch.nonzero(heavy).squeeze(1)
        top = torch.topk(sims[rows], k, dim=1).indices
        i, j = torch.cat([i, rows.repeat_interleave(k)]), torch.cat([j, top.reshape(-1)])
    return i, j


def list_join(vectors: np.ndarray, members: np.ndarray, probers: np.ndarray, threshold: float, k: int,
              device: torch.device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, cosine) of one list as ``ivfjoin._ListJoin`` finds them: members x later members, x probers."""
    v = torch.tensor(vectors, dtype=torch.float32, device=device)  # a copy: the list's rows may be read-only
    out_a, out_b, out_s = [], [], []
    for m0 in range(0, len(members), _BLOCK):
        m_ids = torch.from_numpy(members[m0:m0 + _BLOCK]).to(device)
        m_vec = v[m_ids]
        rest = (members[m0 + len(m_ids):], probers)
        blocks = [(m_ids, True)] + [(torch.from_numpy(r[s:s + _BLOCK]).to(device), False)
                                    for r in rest for s in range(0, len(r), _BLOCK)]
        for q_ids, own in blocks:
            sims = v[q_ids] @ m_vec.T
            if own:  # the same rows on both sides: not a row with itself
                sims.fill_diagonal_(-float("inf"))
            i, j = block_hits(sims, threshold, k)
            out_a.append(q_ids[i])
            out_b.append(m_ids[j])
            out_s.append(sims[i, j])
    if not out_a:
        empty = np.empty(0, np.int64)
        return empty, empty, np.empty(0, np.float32)
    return tuple(torch.cat(x).cpu().numpy() for x in (out_a, out_b, out_s))  # type: ignore[return-value]
