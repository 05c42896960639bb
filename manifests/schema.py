"""The column contract: every column a Thresher manifest can hold, in one place.

A manifest has one row per input row, kept or rejected. Ingest writes the identity, crawl and
image columns; model stages add score columns; dedup adds the duplicate columns; the decision
adds ``keep`` and ``reject_reasons``; captioning adds recaptions. A column a stage did not run
for is absent or null, never invented.

Stages name the columns they read and write with the constants below, and the pipeline checks
them once when it is built.
"""

from __future__ import annotations

import pyarrow as pa

# Identity and input.
SAMPLE_ID = "sample_id"  # img2dataset-style key: zero-padded shard id + zero-padded row index
URL = "url"
CAPTION = "caption"
SOURCE = "source"  # input file the row came from
SOURCE_ROW = "source_row"  # 0-based row (or member) position inside that input

# Crawl and decode.
STATUS = "status"
ERROR = "error"
HTTP_STATUS = "http_status"
MIME_TYPE = "mime_type"
ATTEMPTS = "attempts"
BYTES = "bytes"  # size of the original download
SHA256 = "sha256"  # of the original bytes, before any decode
WIDTH = "width"  # staged image, after resize
HEIGHT = "height"
ORIGINAL_WIDTH = "original_width"
ORIGINAL_HEIGHT = "original_height"
# Where the picture sits in the staged image (``border`` pads it to a square): descriptors are
# computed on this box, not on the padding. The whole staged image when nothing was padded.
CONTENT_LEFT = "content_left"
CONTENT_TOP = "content_top"
CONTENT_WIDTH = "content_width"
CONTENT_HEIGHT = "content_height"

# Compliance and provenance (crawl/robots.py, crawl/tdmrep.py, crawl/blocklist.py, crawl/provenance.py),
# read from the original bytes and response at ingest.
FETCHED_AT = "fetched_at"  # UTC time the download finished (URL lists only): the card's collection period
TDM_POLICY = "tdm_policy"  # TDMRep policy URL of a reserved resource (header or tdmrep.json)
BLOCKLIST = "blocklist"  # name of the hash list a blocked_hash_match row matched
BLOCKLIST_DIGEST = "blocklist_digest"  # "md5:<hex>", "sha1:<hex>", "sha256:<hex>" or "pdq:<hex>"
C2PA_PRESENT = "c2pa_present"  # a C2PA manifest store is embedded (signature validity not implied)
C2PA_CLAIM_GENERATOR = "c2pa_claim_generator"  # the active manifest's claim generator ("name/version")
DIGITAL_SOURCE_TYPE = "digital_source_type"  # IPTC DigitalSourceType term (XMP or C2PA actions), e.g. trainedAlgorithmicMedia
AI_GENERATED_DECLARED = "ai_generated_declared"  # the file itself declares generative-AI origin
LICENSE = "license_url"  # licence URL (XMP cc:license / xmpRights:WebStatement); not "license", which img2dataset lists often carry as an extra column
ATTRIBUTION = "attribution"  # creator / artist (XMP dc:creator, EXIF Artist, IPTC By-line)
COPYRIGHT = "copyright"  # copyright notice (XMP dc:rights, EXIF Copyright, IPTC Copyright Notice)

# Where the staged image lives (relative to the run directory): the staging tar under ingest/, not a
# training shard (those are EXPORT_SHARD / EXPORT_MEMBER), hence the prefix.
SHARD = "staged_shard"
MEMBER = "staged_member"

# Scores written by model stages (filters/).
CLIP_SCORE = "clip_score"
AESTHETIC_SCORE = "aesthetic_score"
NSFW_PROB = "nsfw_prob"
CAPTION_LANG = "caption_lang"  # ISO 639-1 code of the caption's language; "und" when none is recognisable
CAPTION_LANG_PROB = "caption_lang_prob"  # the identifier's confidence in caption_lang
TEXT_AREA_FRAC = "text_area_frac"  # share of the image covered by OCR-detected text lines
OCR_TEXT = "ocr_text"  # text recognised in the image, truncated
CAPTION_TEXT_OVERLAP = "caption_text_overlap"  # share of caption words that OCR read in the image
BLUR_VAR = "blur_var"  # variance of the Laplacian of the grey image: low is blurry
QR_CODES = "qr_codes"  # QR codes found in the image
GREY_ENTROPY = "grey_entropy"  # bits of the grey-level histogram: near 0 is a flat image
WATERMARK_PROB = "watermark_prob"  # LAION watermark classifier's P(watermark)

# Score-phase artefacts: wide columns that dedup and the heads reuse, kept under score/ only,
# never copied into the manifest.
CLIP_EMBEDDING = "clip_embedding"
SSCD_EMBEDDING = "sscd_embedding"
CAPTION_MINHASH = "caption_minhash"
ARTEFACT_COLUMNS = frozenset({CLIP_EMBEDDING, SSCD_EMBEDDING, CAPTION_MINHASH})

# Dedup (dedup/).
PHASH = "phash"
PIXEL_HASH = "pixel_hash"
PDQ_HASH = "pdq_hash"  # 64 hex digits: the 256-bit PDQ hash of the content region
PDQ_QUALITY = "pdq_quality"  # PDQ's quality, 0-100; below dedup.pdq.min_quality no perceptual pairs
CLUSTER_ID = "cluster_id"  # the survivor's group: its kept sample's sample_id (a kept sample: its own)
DUPLICATE_OF = "duplicate_of"
DUP_KIND = "dup_kind"
DUP_SIMILARITY = "dup_similarity"
DUP_DETECTOR = "dup_detector"  # the detector of the link to the survivor: sha256, pixels, minhash, phash, sscd
# Columns of dedup/duplicates.parquet beside the ones above (not copied into the manifest).
KEPT_SAMPLE_ID = "kept_sample_id"
# dedup/semantic_centroids.parquet: 1 - cosine to the row's k-means centroid (high: least prototypical)
CENTROID_DISTANCE = "centroid_distance"
SIMILARITY = "similarity"  # joined into the manifest as dup_similarity

# Decision.
KEEP = "keep"
REJECT_REASONS = "reject_reasons"

# Recaptions (captioning/).
CAPTION_BLIP2 = "caption_blip2"
CAPTION_LLAVA = "caption_llava"
CAPTION_BLIP2_SHORT = "caption_blip2_short"  # optional second, short recaption
CAPTION_LLAVA_SHORT = "caption_llava_short"
CAPTION_QWEN_VL = "caption_qwen_vl"
CAPTION_QWEN_VL_SHORT = "caption_qwen_vl_short"
CAPTION_STATUS = "caption_status"
# Per captioner, the record of its (long) caption: the prompt's tokens as the model saw them (image tokens
# included) and the tokens it generated; model, revision and prompt preset are the run's, in run.json.
CAPTION_TOKENS = {name: (f"caption_{name}_prompt_tokens", f"caption_{name}_output_tokens")
                  for name in ("blip2", "llava", "qwen_vl")}

# Carried from an img2dataset-style input: its EXIF as img2dataset writes it (a JSON object string).
EXIF = "exif"

# Where the row's sample was exported (kept rows only): shards/NNNNN.tar and the member in it.
EXPORT_SHARD = "export_shard"
EXPORT_MEMBER = "export_member"

# Batch-only column: the staged image bytes a model stage reads. Never written to a manifest.
IMAGE = "image"
# Batch-only: the content box "left,top,width,height" of each staged image (the staged tar's ``box`` member).
CONTENT_BOX = "content_box"

# Score-phase artefacts of the perceptual detectors (score/ only): PDQ codes of every indexed region,
# ORB keypoints for geometric verification, SSCD similarity to blank images.
PDQ_CODES = "pdq_codes"
PDQ_COLOUR = "pdq_colour"  # dedup.pdq.colour_signature: chroma by hue (24 x float16), PDQ pairs' colour gate
ORB_FEATURES = "orb_features"
SSCD_BLANK_SIMILARITY = "sscd_blank_similarity"
LAYOUT_CODE = "layout_code"  # dedup.layout: the colour layout (16 x 8 x Lab bytes) of the content region
ARTEFACT_COLUMNS = ARTEFACT_COLUMNS | {PDQ_CODES, PDQ_COLOUR, ORB_FEATURES, SSCD_BLANK_SIMILARITY, LAYOUT_CODE}


class Status:
    """Per-row outcome of ingest. Every input row ends with exactly one of these, and ``error`` says why.

    - ``success``: fetched, decoded and staged; ``sha256``/``bytes``/``mime_type`` describe the original.
    - ``failed_to_download``: the network or server failed: an HTTP error status (``http_status`` says
      which), a timeout, a reset connection, a redirect loop or chain longer than ``max_redirects``.
      Timeouts, connection errors, 408, 429 and 5xx were retried ``crawl.retries`` times first
      (``attempts`` counts every try); other 4xx are final at once.
    - ``failed_to_decode``: the bytes look like an image (magic number) but do not decode (truncated, corrupt).
    - ``filtered_size`` / ``filtered_aspect_ratio``: decoded header below ``min_image_size`` or more
      elongated than ``max_aspect_ratio``.
    - ``disallowed_by_robots``: an ``X-Robots-Tag`` opt-out (``noai``, ``noimageai``, ``noml``, ``noindex``,
      ``noimageindex`` by default) for every agent or ours; the body is not read.
    - ``blocked_address``: the SSRF guard refused the host: loopback, private, link-local (cloud
      metadata), shared, multicast, unspecified or reserved, in any spelling, after DNS or after a redirect.
    - ``invalid_url``: not an http(s) URL with a host (empty, another scheme, malformed).
    - ``too_large``: the body (declared or as read) is larger than ``max_bytes``; reading stopped there.
    - ``not_an_image``: the bytes are no known image format (an HTML page, an empty body), whatever the
      Content-Type said.
    - ``decompression_bomb``: the header declares more than ``max_pixels`` pixels; nothing was decoded.
    - ``disallowed_by_robots_txt``: the origin's robots.txt disallows the URL for our user-agent token or
      for one of the AI-crawler tokens we honour (``crawl.robots_txt.honoured_agents``); ``error`` names the
      agent and the matching rule. Per RFC 9309 a 4xx robots.txt allows everything and a 5xx or unreachable
      one disallows everything (``crawl.robots_txt.on_unreachable``); a ``Crawl-delay`` above
      ``crawl.robots_txt.max_crawl_delay_s`` also lands here. Nothing was requested from the URL. A
      robots.txt that got no answer at all (refused, reset, timed out) leaves the URL unfetched too, but
      as ``failed_to_download`` (retryable): the host is down for the image as well.
    - ``disallowed_by_tdmrep``: the W3C TDM Reservation Protocol reserves text-and-data-mining rights, by a
      ``tdm-reservation: 1`` response header (the body is not read) or by the origin's
      ``/.well-known/tdmrep.json``; ``tdm_policy`` holds the licensing policy URL when one is given.
    - ``blocked_hash_match``: the downloaded bytes match a known-hash list (``crawl.blocklists``): MD5, SHA-1
      or SHA-256 of the bytes, or a PDQ hash within the list's Hamming radius. ``blocklist`` and
      ``blocklist_digest`` say which; the bytes are dropped in memory and never written anywhere.
    - ``invalid_input_row``: the input line itself could not be read (a malformed JSON line, a CSV row with
      the wrong number of fields); ``error`` names the 1-based physical line and the parse error.
      ``source_row`` is a JSON line's 0-based line, a CSV row's 0-based record after the header.
    - ``failed_to_resize``: carried from an img2dataset input whose own resize failed for the row.
      (img2dataset's ``failed_to_download`` rows are carried as ``failed_to_download``.)
    """

    SUCCESS = "success"
    FAILED_TO_DOWNLOAD = "failed_to_download"
    FAILED_TO_DECODE = "failed_to_decode"
    FILTERED_SIZE = "filtered_size"
    FILTERED_ASPECT_RATIO = "filtered_aspect_ratio"
    DISALLOWED_BY_ROBOTS = "disallowed_by_robots"
    BLOCKED_ADDRESS = "blocked_address"
    INVALID_URL = "invalid_url"
    TOO_LARGE = "too_large"
    NOT_AN_IMAGE = "not_an_image"
    DECOMPRESSION_BOMB = "decompression_bomb"
    DISALLOWED_BY_ROBOTS_TXT = "disallowed_by_robots_txt"
    DISALLOWED_BY_TDMREP = "disallowed_by_tdmrep"
    BLOCKED_HASH_MATCH = "blocked_hash_match"
    INVALID_INPUT_ROW = "invalid_input_row"
    FAILED_TO_RESIZE = "failed_to_resize"

    ALL = (
        SUCCESS,
        FAILED_TO_DOWNLOAD,
        FAILED_TO_DECODE,
        FILTERED_SIZE,
        FILTERED_ASPECT_RATIO,
        DISALLOWED_BY_ROBOTS,
        BLOCKED_ADDRESS,
        INVALID_URL,
        TOO_LARGE,
        NOT_AN_IMAGE,
        DECOMPRESSION_BOMB,
        DISALLOWED_BY_ROBOTS_TXT,
        DISALLOWED_BY_TDMREP,
        BLOCKED_HASH_MATCH,
        INVALID_INPUT_ROW,
        FAILED_TO_RESIZE,
    )
    # Opt-outs: the rows a dataset card must account for.
    OPT_OUTS = (DISALLOWED_BY_ROBOTS, DISALLOWED_BY_ROBOTS_TXT, DISALLOWED_BY_TDMREP)
    # Worth another attempt later (network trouble, not the content).
    RETRYABLE = (FAILED_TO_DOWNLOAD,)


class Reason:
    """Reject reasons written by the decision. A row gets every reason that applies."""

    STATUS_PREFIX = "status:"  # a failed ingest: "status:failed_to_download"
    CAPTION_TOO_SHORT = "caption_too_short"
    IMAGE_TOO_SMALL = "image_too_small"
    ASPECT_RATIO = "aspect_ratio"
    CLIP_LOW = "clip_score_low"
    AESTHETIC_LOW = "aesthetic_low"
    NSFW = "nsfw"
    DUPLICATE_EXACT = "duplicate_exact"
    DUPLICATE_CAPTION = "duplicate_caption"
    DUPLICATE_IMAGE = "duplicate_image"
    AI_GENERATED = "ai_generated_declared"  # filters.rules.drop_ai_generated
    CAPTION_LANGUAGE = "caption_language"
    TEXT_DOMINATED = "text_dominated"
    CAPTION_READS_IMAGE = "caption_reads_image"
    BLURRY = "blurry"
    QR_CODE = "qr_code"
    UNIFORM_IMAGE = "uniform_image"
    WATERMARK = "watermark"
    DUPLICATE_SEMANTIC = "duplicate_semantic"

    @staticmethod
    def for_status(status: str) -> str:
        return Reason.STATUS_PREFIX + status


class DupKind:
    """What links a dropped duplicate to its survivor (``dup_kind``); each detector has one kind."""

    EXACT = "exact"  # identical bytes or pixels
    IMAGE = "image"  # the same picture, edited (perceptual hash, SSCD)
    CAPTION = "caption"  # near-identical caption
    SEMANTIC = "semantic"  # near-identical CLIP embedding (SemDeDup): the same content, not necessarily one picture


# The reject reason of each duplicate kind: the one table between dup_kind and Reason.
DUPLICATE_REASONS = {DupKind.EXACT: Reason.DUPLICATE_EXACT, DupKind.IMAGE: Reason.DUPLICATE_IMAGE,
                     DupKind.CAPTION: Reason.DUPLICATE_CAPTION, DupKind.SEMANTIC: Reason.DUPLICATE_SEMANTIC}


INGEST_SCHEMA = pa.schema(
    [
        pa.field(SAMPLE_ID, pa.string(), nullable=False),
        pa.field(URL, pa.string()),
        pa.field(CAPTION, pa.string()),
        pa.field(SOURCE, pa.string()),
        pa.field(SOURCE_ROW, pa.int64()),
        pa.field(STATUS, pa.string(), nullable=False),
        pa.field(ERROR, pa.string()),
        pa.field(HTTP_STATUS, pa.int32()),
        pa.field(MIME_TYPE, pa.string()),
        pa.field(ATTEMPTS, pa.int32()),
        pa.field(BYTES, pa.int64()),
        pa.field(SHA256, pa.string()),
        pa.field(WIDTH, pa.int32()),
        pa.field(HEIGHT, pa.int32()),
        pa.field(ORIGINAL_WIDTH, pa.int32()),
        pa.field(ORIGINAL_HEIGHT, pa.int32()),
        pa.field(SHARD, pa.string()),
        pa.field(MEMBER, pa.string()),
        pa.field(FETCHED_AT, pa.timestamp("us", tz="UTC")),
        pa.field(TDM_POLICY, pa.string()),
        pa.field(BLOCKLIST, pa.string()),
        pa.field(BLOCKLIST_DIGEST, pa.string()),
        pa.field(C2PA_PRESENT, pa.bool_()),
        pa.field(C2PA_CLAIM_GENERATOR, pa.string()),
        pa.field(DIGITAL_SOURCE_TYPE, pa.string()),
        pa.field(AI_GENERATED_DECLARED, pa.bool_()),
        pa.field(LICENSE, pa.string()),
        pa.field(ATTRIBUTION, pa.string()),
        pa.field(COPYRIGHT, pa.string()),
        pa.field(EXIF, pa.string()),
        pa.field(CONTENT_LEFT, pa.int32()),
        pa.field(CONTENT_TOP, pa.int32()),
        pa.field(CONTENT_WIDTH, pa.int32()),
        pa.field(CONTENT_HEIGHT, pa.int32()),
    ]
)

SCORE_FIELDS = [
    pa.field(CLIP_SCORE, pa.float32()),
    pa.field(AESTHETIC_SCORE, pa.float32()),
    pa.field(NSFW_PROB, pa.float32()),
    pa.field(PHASH, pa.string()),
    pa.field(PIXEL_HASH, pa.string()),
    pa.field(PDQ_HASH, pa.string()),
    pa.field(PDQ_QUALITY, pa.int16()),
    pa.field(CAPTION_LANG, pa.string()),
    pa.field(CAPTION_LANG_PROB, pa.float32()),
    pa.field(TEXT_AREA_FRAC, pa.float32()),
    pa.field(OCR_TEXT, pa.string()),
    pa.field(CAPTION_TEXT_OVERLAP, pa.float32()),
    pa.field(BLUR_VAR, pa.float32()),
    pa.field(QR_CODES, pa.float32()),
    pa.field(GREY_ENTROPY, pa.float32()),
    pa.field(WATERMARK_PROB, pa.float32()),
]

DEDUP_FIELDS = [
    pa.field(CLUSTER_ID, pa.string()),
    pa.field(DUPLICATE_OF, pa.string()),
    pa.field(DUP_KIND, pa.string()),
    pa.field(DUP_SIMILARITY, pa.float32()),
    pa.field(DUP_DETECTOR, pa.string()),
]

DECISION_FIELDS = [
    pa.field(KEEP, pa.bool_(), nullable=False),
    pa.field(REJECT_REASONS, pa.list_(pa.string()), nullable=False),
]

CAPTION_FIELDS = [
    pa.field(CAPTION_BLIP2, pa.string()),
    pa.field(CAPTION_LLAVA, pa.string()),
    pa.field(CAPTION_BLIP2_SHORT, pa.string()),
    pa.field(CAPTION_LLAVA_SHORT, pa.string()),
    pa.field(CAPTION_QWEN_VL, pa.string()),
    pa.field(CAPTION_QWEN_VL_SHORT, pa.string()),
    pa.field(CAPTION_STATUS, pa.string()),
] + [pa.field(name, pa.int32()) for pair in CAPTION_TOKENS.values() for name in pair]

EXPORT_FIELDS = [
    pa.field(EXPORT_SHARD, pa.string()),
    pa.field(EXPORT_MEMBER, pa.string()),
]

MANIFEST_SCHEMA = pa.schema(
    list(INGEST_SCHEMA) + SCORE_FIELDS + DEDUP_FIELDS + DECISION_FIELDS + CAPTION_FIELDS + EXPORT_FIELDS
)

KNOWN_COLUMNS = frozenset(MANIFEST_SCHEMA.names) | {IMAGE, CONTENT_BOX} | ARTEFACT_COLUMNS


def conform(table: pa.Table, schema: pa.Schema = MANIFEST_SCHEMA) -> pa.Table:
    """Order and type ``table``'s columns by the contract; contract columns it lacks are added as nulls.

    Columns outside the contract are kept, after the contract's, so a stage added later is never lost.
    """
    columns, fields = [], []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            if not field.nullable:
                raise ValueError(f"table lacks required column {field.name!r}")
            columns.append(pa.nulls(table.num_rows, field.type))
        fields.append(field)
    for name in table.column_names:
        if name not in schema.names:
            columns.append(table.column(name))
            fields.append(table.schema.field(name))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))
