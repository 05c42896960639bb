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

# Where the staged image lives (relative to the run directory).
SHARD = "shard"
MEMBER = "member"

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
CLUSTER_ID = "cluster_id"
DUPLICATE_OF = "duplicate_of"
DUP_KIND = "dup_kind"
DUP_SIMILARITY = "dup_similarity"
# Columns of dedup/duplicates.parquet beside the ones above (not copied into the manifest).
KEPT_SAMPLE_ID = "kept_sample_id"
SIMILARITY = "similarity"  # joined into the manifest as dup_similarity

# Decision.
KEEP = "keep"
REJECT_REASONS = "reject_reasons"

# Recaptions (captioning/).
CAPTION_BLIP2 = "caption_blip2"
CAPTION_LLAVA = "caption_llava"
CAPTION_BLIP2_SHORT = "caption_blip2_short"  # optional second, short recaption
CAPTION_LLAVA_SHORT = "caption_llava_short"
CAPTION_STATUS = "caption_status"

# Batch-only column: the staged image bytes a model stage reads. Never written to a manifest.
IMAGE = "image"


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
    - ``disallowed_by_robots``: an ``X-Robots-Tag`` opt-out (``noai``, ``noimageai``, ``noindex``,
      ``noimageindex`` by default) for every agent or ours; the body is not read.
    - ``blocked_address``: the SSRF guard refused the host: loopback, private, link-local (cloud
      metadata), shared, multicast, unspecified or reserved, in any spelling, after DNS or after a redirect.
    - ``invalid_url``: not an http(s) URL with a host (empty, another scheme, malformed).
    - ``too_large``: the body (declared or as read) is larger than ``max_bytes``; reading stopped there.
    - ``not_an_image``: the bytes are no known image format (an HTML page, an empty body), whatever the
      Content-Type said.
    - ``decompression_bomb``: the header declares more than ``max_pixels`` pixels; nothing was decoded.
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
    )
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
    ]
)

SCORE_FIELDS = [
    pa.field(CLIP_SCORE, pa.float32()),
    pa.field(AESTHETIC_SCORE, pa.float32()),
    pa.field(NSFW_PROB, pa.float32()),
    pa.field(PHASH, pa.string()),
    pa.field(PIXEL_HASH, pa.string()),
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
    pa.field(CAPTION_STATUS, pa.string()),
]

MANIFEST_SCHEMA = pa.schema(
    list(INGEST_SCHEMA) + SCORE_FIELDS + DEDUP_FIELDS + DECISION_FIELDS + CAPTION_FIELDS
)

KNOWN_COLUMNS = frozenset(MANIFEST_SCHEMA.names) | {IMAGE} | ARTEFACT_COLUMNS


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
