"""Exact, caption (MinHash LSH) and image near-duplicate detection, and global clusters.

Score phase (per row, any shard split, any number of workers): ``PixelHasher`` -> ``pixel_hash``,
``PerceptualHasher`` -> ``phash``, ``PdqHasher`` -> ``pdq_hash``, ``pdq_quality``, ``pdq_codes``, ``pdq_colour``,
``CaptionMinHasher`` -> ``caption_minhash``, ``SscdEmbedder`` -> ``sscd_embedding``. Dedup phase (global, ``partitioned.run_partitioned``): every enabled detector's finder (``finders``)
turns those columns (and ingest's ``sha256``) into pairs -> dedup/pairs/<detector>-NNNNN.parquet
(sample_a, sample_b, detector, dup_kind, similarity) -> components and, per group, ``cluster.cluster``
(``keep`` policy) -> dedup/duplicates/UNIT/part-GGGGG.parquet (sample_id, cluster_id = kept_sample_id: the
survivor's group, duplicate_of, dup_kind, similarity, detector). Each step is a list of independent tasks
(``shuffle``, ``keyjoin``, ``listjoin``, ``components``, ``groups``) that ``plan.Plan`` sizes and hands to its
executor: Ray tasks on a cluster, or one after another in the driver (``dedup.partitions.enabled`` false).
The decision re-clusters the stored pairs itself (``pipelines.run.repick``) with its own thresholds and
eligibility, so it needs only the pairs and the manifest's scores.
"""
