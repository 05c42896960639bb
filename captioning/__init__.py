"""Recaptions of kept samples by vision-language models.

``blip2.Blip2Captioner`` and ``llava.LlavaCaptioner`` are the stages (one per module, run as Ray actor
pools by pipelines/); ``vlm`` is the load/generate seam they share, ``recaption`` the per-batch flow,
``postprocess`` the pure clean-up and status rules, and ``weights`` the offline weight lookup (the random
tiny/real-size models that tests and bench/captioning.py load through it are built in ``support/random_models.py``).
"""
