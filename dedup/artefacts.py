"""Reading descriptors back from the score phase's Parquet files, a record batch at a time.

Every detector numbers samples by one global order, the sorted sample_ids of the run, so that pairs,
indexes and clusters do not depend on how the rows were split into shards or workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests import schema as col


@dataclass(frozen=True)
class SampleIndex:
    """sample_id <-> position in the sorted list of every sample_id the run has."""

    ids: pl.Series  # sorted, unique

    @classmethod
    def of(cls, sample_ids: pl.Series) -> SampleIndex:
        return cls(sample_ids.unique().sort().rename(col.SAMPLE_ID))

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self, sample_ids: pl.Series) -> np.ndarray:
        """Positions of ``sample_ids`` (all must be present)."""
        pos = self.ids.search_sorted(sample_ids, side="left").to_numpy()
        bad = (pos >= len(self.ids)) | (self.ids.gather(np.minimum(pos, len(self.ids) - 1)) != sample_ids).to_numpy()
        if bad.any():
            raise KeyError(f"{int(bad.sum())} sample ids are not in the run, e.g. {sample_ids.filter(bad)[0]!r}")
        return pos.astype(np.int64)

    def names(self, positions: np.ndarray) -> pl.Series:
        return self.ids.gather(positions)


def iter_column(files: list[Path], column: str, batch_rows: int = 65_536) -> Iterator[tuple[pl.Series, pa.Array]]:
    """(sample_ids, values) of the non-null rows of ``column``, one record batch at a time."""
    for path in files:
        reader = pq.ParquetFile(path)
        if column not in reader.schema_arrow.names:
            continue
        for batch in reader.iter_batches(batch_size=batch_rows, columns=[col.SAMPLE_ID, column]):
            values = batch.column(column)
            keep = pc.is_valid(values)
            ids = pc.filter(batch.column(col.SAMPLE_ID), keep)
            yield pl.Series(col.SAMPLE_ID, ids), pc.filter(values, keep)


def binary_matrix(values: pa.Array, dtype: np.dtype, width: int) -> np.ndarray:
    """A binary column of fixed-size little-endian vectors -> an (n, width) array, without a copy per row."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(pa.large_binary())
    if len(values) == 0:
        return np.empty((0, width), dtype=dtype)
    itemsize = np.dtype(dtype).itemsize
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset:values.offset + len(values) + 1]
    if len(values) and not (np.diff(offsets) == width * itemsize).all():
        raise ValueError(f"descriptor rows are not all {width} x {np.dtype(dtype).name}; "
                         f"was the column written with a different size?")
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    return data.view(np.dtype(dtype).newbyteorder("<")).reshape(len(values), width)


def hex_matrix(values: pa.Array, nbytes: int) -> np.ndarray:
    """Hex strings (pHash) -> (n, nbytes) uint8 codes."""
    decoded = pl.Series(values).str.decode("hex")
    return binary_matrix(decoded.to_arrow(), np.uint8, nbytes)


def column_matrix(files: list[Path], column: str, index: SampleIndex,
                  read: Callable[[pa.Array], Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """(positions sorted, matrix rows in that order) of every non-null row of ``column`` in ``files``."""
    parts, positions = [], []
    for ids, values in iter_column(files, column):
        positions.append(index.positions(ids))
        parts.append(np.array(read(values)))
    if not parts:
        return np.empty(0, np.int64), None
    pos = np.concatenate(positions)
    order = np.argsort(pos, kind="stable")
    return pos[order], np.concatenate(parts)[order]
