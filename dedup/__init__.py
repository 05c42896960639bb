"""Exact, caption (MinHash LSH) and image near-duplicate detection, and global clusters.

Score phase (per row, any shard split, any number of workers): ``PixelHasher`` -> ``pixel_hash``,
``PerceptualHasher`` -> ``phash``, ``PdqHasher`` -> ``pdq_hash``, ``pdq_quality``, ``pdq_codes``, ``pdq_colour``,
``CaptionMinHasher`` -> ``caption_minhash``, ``SscdEmbedder`` -> ``sscd_embedding``. Dedup phase (global, ``run.run_dedup``): every enabled detector turns those columns
(and ingest's ``sha256``) into pairs numbered by the sorted sample_ids of the run -> dedup/pairs.parquet
(sample_a, sample_b, detector, dup_kind, similarity) -> ``cluster.cluster`` (union-find, ``keep`` policy)
-> dedup/duplicates.parquet (sample_id, cluster_id = kept_sample_id: the survivor's group, duplicate_of,
dup_kind, similarity, detector). The decision re-clusters the stored pairs itself (``pipelines.run.repick``) with its own
thresholds and eligibility, so it needs only the pairs and the manifest's scores.
On a cluster, ``partitioned.run_partitioned`` gives the same pairs and duplicates as bucketed part files,
each step a list of independent tasks (``shuffle``, ``keyjoin``, ``listjoin``, ``components``, ``groups``)
that ``plan.Plan`` sizes and hands to its executor.
"""
