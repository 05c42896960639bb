"""A fixed-shape pixel need as a tensor on the model's device, decoded there when the decode mode is ``gpu``.

CPU mode: the decode stage made the need for every row; this puts the decoded rows' arrays on the device.
GPU mode (``decode.device: gpu``): the decode stage passes a JPEG row's bytes in column ``JPEG`` instead,
and they are decoded here in one batched ``torchvision.io.decode_jpeg(device=...)`` call (nvJPEG on CUDA)
and resized on the device by the need's ``on_device``. Rows that are not JPEG, or that nvJPEG refuses
(CMYK, arithmetic coding), were or are made on the CPU. Resize mode (``decode.resize: gpu``): the decode
stage decoded every row and passes its RGB image in column ``RGB``; the need is resized here. torch is
imported inside the functions: this module is loaded by actors only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from manifests.images import DECODED, JPEG, RGB, PixelNeed, decode_rgb, log_decode, stacked


def decode_jpegs(blobs: list[bytes], device: Any) -> list[Any | None]:
    """Each JPEG as a (3, H, W) uint8 tensor on ``device``, in one batched call; None where it fails."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    for blob in blobs:
        log_decode(blob)
    data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    try:
        return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:  # one bad image fails the batch call: find it one by one
        out = []
        for tensor in data:
            try:
                out.append(decode_jpeg(tensor, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                out.append(None)
        return out


def device_pixels(batch: dict[str, np.ndarray], need: PixelNeed, device: Any) -> tuple[Any, np.ndarray]:
    """(the need's arrays of the rows that decoded, stacked; their mask). A host array in CPU mode, a device
    tensor (N, H, W, 3) uint8 when some rows were decoded on ``device``."""
    ok = np.array(batch[DECODED], dtype=bool)
    if RGB in batch:
        return resized_on_device(need, batch[RGB], ok, device), ok
    jpeg = [v if isinstance(v, bytes) and v else None for v in batch.get(JPEG, ())]  # b"": made on the CPU
    if not any(v is not None for v in jpeg):
        values = batch[need.column]
        return stacked(values if ok.all() else values[ok]), ok  # no 40 MB copy for the usual all-decoded batch
    import torch

    rows = [i for i, v in enumerate(jpeg) if v is not None]
    made = made_on_device(need, [jpeg[i] for i in rows], device)
    cpu = batch[need.column]  # rows made on the CPU (the others hold empty placeholders)
    out: dict[int, Any] = {i: to_device(cpu[i][None], device) for i in np.flatnonzero(ok) if jpeg[i] is None}
    out.update((i, m) for i, m in zip(rows, made) if m is not None)
    ok = np.array([i in out for i in range(len(ok))], dtype=bool)
    if not out:
        return torch.zeros((0, *need.shape()), dtype=torch.uint8, device=device), ok
    return torch.cat([out[i] for i in sorted(out)]), ok


def resized_on_device(need: PixelNeed, rgb: np.ndarray, ok: np.ndarray, device: Any) -> Any:
    """The need of the decoded rows (``ok``) as one (n, h, w, 3) uint8 tensor on ``device``, made from their
    RGB images by the need's ``on_device``: one call for a batch of one size, one per size otherwise."""
    import torch

    if rgb.dtype != object:  # (N, H, W, 3): one size (every row decoded, as the decode stage makes it)
        return need.on_device(to_device(rgb if ok.all() else rgb[ok], device).permute(0, 3, 1, 2))
    rows = np.flatnonzero(ok)
    if not len(rows):
        return torch.zeros((0, *need.shape()), dtype=torch.uint8, device=device)
    by_shape: dict[tuple, list[int]] = {}
    for i in rows:
        by_shape.setdefault(rgb[i].shape, []).append(int(i))
    made, order = [], []
    for members in by_shape.values():
        made.append(need.on_device(to_device(np.stack([rgb[i] for i in members]), device).permute(0, 3, 1, 2)))
        order.extend(members)
    return torch.cat(made)[torch.from_numpy(np.argsort(order)).to(device)]


def made_on_device(need: PixelNeed, blobs: list[bytes], device: Any) -> list[Any | None]:
    """The need of each JPEG as a (1, h, w, 3) tensor on ``device``: decoded in one batched call, resized
    together per source size; made on the CPU where the device decoder fails; None where nothing decodes."""
    import torch

    decoded = decode_jpegs(blobs, device)
    by_shape: dict[tuple, list[int]] = {}
    for i, image in enumerate(decoded):
        if image is not None:
            by_shape.setdefault(tuple(image.shape), []).append(i)
    out: list[Any | None] = [None] * len(blobs)
    for members in by_shape.values():
        for i, made in zip(members, need.on_device(torch.stack([decoded[i] for i in members]))):
            out[i] = made[None]
    for i, image in enumerate(decoded):
        if image is None:
            img = decode_rgb(blobs[i])
            out[i] = None if img is None else to_device(need.from_image(img)[None], device)
    return out


def to_device(array: np.ndarray | Any, device: Any) -> Any:
    """A host array on ``device``: through pinned memory and a non-blocking copy on CUDA (the copy overlaps
    the previous batch's compute); a tensor already there stays."""
    import torch

    if not isinstance(array, torch.Tensor):
        array = np.ascontiguousarray(array)
        array = array if array.flags.writeable else array.copy()  # Ray hands read-only views of its store
    tensor = array if isinstance(array, torch.Tensor) else torch.from_numpy(array)
    if tensor.device == device:
        return tensor
    if device.type == "cuda" and tensor.device.type == "cpu":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def normalise(pixels: Any, mean: Any, std: Any) -> Any:
    """(N, H, W, 3) uint8 on the device -> (N, 3, H, W) float32, channels-last: ToTensor's /255, then Normalize."""
    x = pixels.permute(0, 3, 1, 2).float().div_(255.0)
    return x.sub_(mean).div_(std)
