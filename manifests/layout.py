"""Where each phase of a run reads and writes, under one run directory.

    RUN/
      config.yaml                 resolved config of the last command
      run.json                    versions, model ids, counts, wall time per phase
      ingest/units/NNNNN.parquet  input rows split into work units (URL lists, folders)
      ingest/staged/NNNNN.tar     staged images, WebDataset layout ({sample_id}.jpg)
      ingest/staged/NNNNN.parquet one row per input row of the unit, success or not
      score/scores/*.parquet      sample_id + every score column and artefact (embeddings, signatures)
      dedup/pairs.parquet         candidate duplicate pairs with similarity
      dedup/duplicates.parquet    sample_id, cluster_id (= kept_sample_id, the survivor), dup_kind, similarity, detector
                                  (as the dedup phase's config had it; decide re-clusters the stored pairs)
      dedup/pairs/*.parquet       the same pairs as part files, when dedup runs partitioned (dedup.partitions)
      dedup/duplicates/UNIT/*.parquet  the same duplicates as part files, by the samples' ingest unit
      decide/parts/part-UNIT.parquet  the decided rows of ingest unit UNIT (the staged file's stem): all
                                  columns, keep and reject_reasons
      decide/counts.json          UNIT -> [rows, kept] (what export plans shards from)
      dedup/rules.json            the rules digest the dedup phase ranked survivors under
      dedup/eligible/UNIT.parquet sample_id, eligible (passes every rule but dedup), per ingest unit, written
                                  by the dedup phase's eligibility tasks (dedup/eligible.parquet: one frame)
      decide/duplicates/UNIT/*.parquet  survivors re-picked under this decision's rules, when they differ
                                  from the dedup phase's (else decide reads dedup/duplicates/)
      decide/duplicates.parquet   the same, re-picked in one process from the single pairs file of a run
                                  made before the one dedup engine
      decide/eligible/, decide/shuffle/  the re-pick's eligibility per unit and shuffle buckets, removed after it
      caption/captions/unit=UNIT/*.parquet  recaptions of the kept rows of unit UNIT (a rerun adds files for
                                  newly kept rows; caption/stages.json: the captioners they were made by)
      manifest/part-UNIT.parquet  the final manifest (decide + captions + export location), one part per
                                  ingest unit; read it as one dataset: pl.scan_parquet("RUN/manifest/*.parquet"),
                                  DuckDB read_parquet('RUN/manifest/*.parquet')
      manifest.parquet            the same rows as one file, with export.manifest_file: true (small runs),
                                  and the manifest of a re-export
      shards/NNNNN.tar            exported training shards ({key}.jpg, .txt, .json)
      shards/NNNNN.parquet        the manifest rows of that shard (img2dataset's per-shard table)
      shards/NNNNN_stats.json     img2dataset's per-shard counts
      shards/sizes.json           shard -> samples (open_clip's loader reads it)
      logs/thresher.log           Ray's and the workers' logs (the console shows them with -v)
      reports/plots/*.png         ``thresher plots`` (score histograms, reject reasons)
      reports/audit.html          ``thresher audit``
    RUN-NAME/                     ``thresher reexport RUN --name NAME``: a re-export beside the run, which it
                                  never writes into (see manifests/reexport.py)

A phase is complete when its ``_DONE`` marker exists; the marker records what its output depends on
(``pipelines/run/phase_inputs.py``), so a rerun redoes a phase only when that changed. Outputs are written
under a temporary name and renamed, so a crash never leaves a half-written file under a final name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# The phases of a run, in run order; each writes the folder of its name (``pipelines.run.phases.PHASES`` holds
# what runs each one). Known here, below Ray and the models, so the CLI and the tools can name them.
PHASE_NAMES = ("ingest", "score", "dedup", "decide", "caption", "export")

@dataclass(frozen=True)
class RunLayout:
    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike) -> RunLayout:
        return cls(Path(root))

    def phase_dir(self, phase: str) -> Path:
        """The folder of a phase (``PHASE_NAMES``)."""
        return self.root / phase

    def done_marker(self, phase: str) -> Path:
        return self.phase_dir(phase) / "_DONE"

    def is_done(self, phase: str) -> bool:
        return self.done_marker(phase).exists()

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def units_dir(self) -> Path:
        return self.root / "ingest" / "units"

    @property
    def staged_dir(self) -> Path:
        return self.root / "ingest" / "staged"

    def staged_tar(self, unit: int) -> Path:
        return self.staged_dir / f"{unit:05d}.tar"

    def staged_rows(self, unit: int) -> Path:
        return self.staged_dir / f"{unit:05d}.parquet"

    def staged_tars(self) -> list[Path]:
        return sorted(self.staged_dir.glob("*.tar"))

    def staged_row_files(self) -> list[Path]:
        return sorted(self.staged_dir.glob("*.parquet"))

    @property
    def scores_dir(self) -> Path:
        return self.root / "score" / "scores"

    def score_files(self) -> list[Path]:
        return sorted(self.scores_dir.glob("*.parquet"))

    @property
    def pairs(self) -> Path:
        return self.root / "dedup" / "pairs.parquet"

    @property
    def duplicates(self) -> Path:
        return self.root / "dedup" / "duplicates.parquet"

    @property
    def rules_json(self) -> Path:
        """The rules digest the dedup phase ranked its survivors under (``pipelines.run.decide_tasks``)."""
        return self.root / "dedup" / "rules.json"

    @property
    def dedup_eligible(self) -> Path:
        """sample_id, eligible as one frame, when the dedup phase was handed one."""
        return self.root / "dedup" / "eligible.parquet"

    @property
    def dedup_eligible_dir(self) -> Path:
        """dedup/eligible/UNIT.parquet: (sample_id, eligible) per ingest unit, written by eligibility tasks."""
        return self.root / "dedup" / "eligible"

    @property
    def dedup_work(self) -> Path:
        """The dedup phase's shuffle buckets between steps; removed when the phase ends."""
        return self.root / "dedup" / "work"

    @property
    def decided(self) -> Path:
        """The decided manifest as one file (runs made before the decision ran per unit)."""
        return self.root / "decide" / "manifest.parquet"

    @property
    def decided_dir(self) -> Path:
        return self.root / "decide" / "parts"

    def decided_part(self, unit: str) -> Path:
        return self.decided_dir / f"part-{unit}.parquet"

    def decided_files(self) -> list[Path]:
        """The decided rows: the part files, or the one file of an older run."""
        parts = sorted(self.decided_dir.glob("*.parquet"))
        return parts or ([self.decided] if self.decided.exists() else [])

    @property
    def decided_counts(self) -> Path:
        return self.root / "decide" / "counts.json"

    @property
    def decided_duplicates_dir(self) -> Path:
        return self.root / "decide" / "duplicates"

    @property
    def decided_duplicates(self) -> Path:
        """Survivors re-picked in one process (the single pairs file of a run made before the one engine)."""
        return self.root / "decide" / "duplicates.parquet"

    @property
    def decide_eligible_dir(self) -> Path:
        return self.root / "decide" / "eligible"

    @property
    def decide_shuffle_dir(self) -> Path:
        return self.root / "decide" / "shuffle"

    @property
    def captions(self) -> Path:
        """Recaptions as one file (runs made before captions were written per unit)."""
        return self.root / "caption" / "captions.parquet"

    @property
    def captions_dir(self) -> Path:
        return self.root / "caption" / "captions"

    def unit_captions(self, unit: str) -> list[Path]:
        return sorted((self.captions_dir / f"unit={unit}").glob("*.parquet"))

    @property
    def manifest(self) -> Path:
        """The final manifest as one file (export.manifest_file, a re-export, an older run)."""
        return self.root / "manifest.parquet"

    @property
    def manifest_dir(self) -> Path:
        return self.root / "manifest"

    def manifest_part(self, unit: str) -> Path:
        return self.manifest_dir / f"part-{unit}.parquet"

    def manifest_files(self) -> list[Path]:
        """The final manifest: its part files, or the one file; [] before export."""
        parts = sorted(self.manifest_dir.glob("*.parquet"))
        return parts or ([self.manifest] if self.manifest.exists() else [])

    @staticmethod
    def unit_of(part: Path) -> str:
        """UNIT of ``part-UNIT.parquet``."""
        return part.stem.removeprefix("part-")

    @property
    def shards_dir(self) -> Path:
        return self.root / "shards"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # Partitioned dedup outputs (dedup.partitioned; dedup.partitions.enabled):
    #   dedup/pairs/<detector>-NNNNN.parquet   the pairs one task found (PAIRS_SCHEMA); every pair of
    #                                          the run is in exactly one part, parts of one detector
    #                                          are disjoint buckets (by key, signature bucket or sample_a)
    #   dedup/duplicates/UNIT/part-GGGGG.parquet  the duplicates rows of unit UNIT's samples (UNIT: the
    #                                          staged file's stem) found by group GGGGG (a hash bucket
    #                                          of component labels) or, for components over
    #                                          dedup.partitions.max_component_rows, by giant-round
    #                                          task giant-BBBBB; each clustered sample once
    #   dedup/semantic_centroids/<part>.parquet  sample_id, centroid_distance (to its k-means centroid)
    #                                          of the rows one semantic assignment task read (<part>: its
    #                                          batch of score files); each embedded sample once; read by
    #                                          keep: least_prototypical (the one-process run writes
    #                                          dedup/semantic_centroids.parquet instead)
    #   dedup/work/                            shuffle buckets between steps, NNNNN/<task>.parquet;
    #                                          removed when the phase ends
    # Readers take every part as one dataset: pl.scan_parquet("dedup/duplicates/**/*.parquet");
    # a unit's decision reads dedup/duplicates/UNIT/ only.
    @property
    def pairs_dir(self) -> Path:
        return self.root / "dedup" / "pairs"

    @property
    def duplicates_dir(self) -> Path:
        return self.root / "dedup" / "duplicates"

    def duplicates_files(self) -> list[Path]:
        """The duplicates table as written by either dedup path: one file, or the part files."""
        if self.duplicates.exists():
            return [self.duplicates]
        return sorted(self.duplicates_dir.rglob("*.parquet"))

    def pairs_files(self) -> list[Path]:
        """The pairs table as written by either dedup path: one file, or the part files."""
        if self.pairs.exists():
            return [self.pairs]
        return sorted(self.pairs_dir.glob("*.parquet"))
