"""What to ingest and how to fetch and stage it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from manifests import schema as col
from manifests.config import StrictModel


class InputConfig(StrictModel):
    """The input: a URL list (img2dataset's convention), img2dataset-style WebDataset shards, or a folder."""

    kind: Literal["url_list", "webdataset", "folder"] = Field(
        "url_list", description="url_list: a table of URLs to download; webdataset: .tar shards (e.g. img2dataset's "
                                "output) whose images are used as they are; folder: image files, captions from "
                                "same-named .txt sidecars")
    path: str = Field(description="URL list file, folder of .tar shards (or one .tar), or folder of images")
    format: Literal["auto", "parquet", "csv", "jsonl", "txt"] = Field(
        "auto", description="auto: from the suffix (.parquet, .csv/.tsv, .jsonl/.json, .txt: one URL per line)"
    )
    url_col: str = Field("url", description="the column holding each row's URL (img2dataset's url_col)")
    caption_col: str | None = Field(
        "caption", description="None (or a .txt list): rows have no caption source, and caption rules skip them"
    )
    rows_per_shard: int = Field(10_000, ge=1, description="input rows per work unit (img2dataset's number_sample_per_shard)")
    extra_cols: list[str] = Field(
        default_factory=list, description="input columns carried into the manifest and each {key}.json as they "
                                          "are (img2dataset's save_additional_columns), e.g. [license]"
    )

    @field_validator("extra_cols")
    @classmethod
    def _not_a_manifest_column(cls, names: list[str]) -> list[str]:
        """An extra column named like one Thresher writes would be overwritten in the manifest, silently."""
        taken = sorted(set(names) & col.KNOWN_COLUMNS)
        if taken:
            raise ValueError(f"{taken} are manifest columns Thresher writes itself (manifests/schema.py); "
                             f"rename them in the input")
        return names


AI_CRAWLER_TOKENS = ("GPTBot", "ChatGPT-User", "CCBot", "Google-Extended", "anthropic-ai", "ClaudeBot",
                     "Claude-Web", "Applebot-Extended", "Bytespider", "PerplexityBot", "meta-externalagent",
                     "FacebookBot", "cohere-ai", "Diffbot", "Omgilibot", "Amazonbot", "img2dataset")


class RobotsTxtConfig(StrictModel):
    """robots.txt (RFC 9309), fetched once per origin per worker through the same guard as images."""

    enabled: bool = Field(True, description="fetch and obey robots.txt before fetching from an origin")
    honoured_agents: tuple[str, ...] = Field(
        AI_CRAWLER_TOKENS, description="AI-crawler tokens honoured besides ours: a URL disallowed for any is skipped")
    ttl_s: float = Field(86_400.0, gt=0, description="how long a fetched robots.txt is trusted (RFC 9309: 24 h)")
    on_unreachable: Literal["disallow", "allow"] = Field(
        "disallow", description="5xx, timeout or refused robots.txt: RFC 9309 says disallow all")
    max_bytes: int = Field(512 * 1024, ge=1024, description="parse at most this much (RFC 9309: at least 500 KiB)")
    max_crawl_delay_s: float = Field(
        30.0, ge=0, description="a Crawl-delay above this is not waited out: the origin's URLs are skipped instead")


class TdmRepConfig(StrictModel):
    """W3C TDM Reservation Protocol: the ``tdm-reservation`` header and ``/.well-known/tdmrep.json``."""

    enabled: bool = Field(
        True, description="skip URLs reserved by a tdm-reservation header or the origin's /.well-known/tdmrep.json")
    ttl_s: float = Field(86_400.0, gt=0, description="how long a fetched tdmrep.json is trusted, in seconds")


class BlocklistConfig(StrictModel):
    """One known-hash list: hex digests one per line (MD5, SHA-1 or SHA-256 by length), or PDQ hashes."""

    path: str = Field(description="the list file, one hash per line")
    name: str | None = Field(None, description="name in the manifest and run.json (default: the file's stem)")
    kind: Literal["digest", "pdq"] = Field(
        "digest", description="digest: exact hashes of the downloaded bytes; pdq: 64-hex-digit PDQ perceptual hashes")
    pdq_radius: int = Field(31, ge=0, le=256, description="PDQ match when the Hamming distance is at most this")

    @property
    def label(self) -> str:
        return self.name or Path(self.path).stem


class CrawlConfig(StrictModel):
    """Fetching and decoding. Defaults follow img2dataset where it has one."""

    # Network.
    concurrency: int = Field(64, ge=1, description="requests in flight per ingest worker")
    per_host_concurrency: int = Field(16, ge=1, description="connections open to one host at a time, per worker")
    connect_timeout_s: float = Field(10.0, gt=0, description="seconds to open a connection")
    read_timeout_s: float = Field(20.0, gt=0, description="seconds to wait for each read from the socket")
    total_timeout_s: float = Field(
        60.0, gt=0, description="seconds for a whole request, body included (at least connect_timeout_s)")
    retries: int = Field(2, ge=0, description="extra attempts on timeouts, connection errors, 408, 429 and 5xx")
    backoff_s: float = Field(0.5, ge=0, description="first retry waits about this long, doubling each time")
    max_backoff_s: float = Field(30.0, ge=0, description="the longest wait between retries, in seconds")
    max_retry_after_s: float = Field(
        60.0, ge=0, description="a Retry-After longer than this is not waited for: the row fails instead"
    )
    dns_cache_ttl_s: float = Field(300.0, ge=0, description="per-worker DNS cache lifetime (failures: 30 s at most)")
    max_redirects: int = Field(5, ge=0, description="redirects followed per URL; a longer chain fails the row")
    max_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="stop reading a body past this size")
    verify_tls: bool = Field(True, description="check https certificates; False accepts hosts with broken TLS")
    user_agent_token: str = Field(
        "thresher", description="our crawler name: sent in the User-Agent and matched in robots.txt and X-Robots-Tag")
    disallowed_header_directives: tuple[str, ...] = Field(
        ("noai", "noimageai", "noml", "noindex", "noimageindex"),
        description="X-Robots-Tag directives (for all agents or ours) that opt an image out: it is not kept")
    allow_private_addresses: bool = Field(
        False, description="fetch loopback/private/link-local addresses (tests and the demo need loopback)"
    )

    # Compliance: opt-outs honoured before fetching, hash lists checked right after, provenance read at ingest.
    robots_txt: RobotsTxtConfig = Field(
        RobotsTxtConfig(), description="opt-outs in robots.txt, for our agent or an AI crawler")
    tdmrep: TdmRepConfig = Field(TdmRepConfig(), description="text-and-data-mining rights reservations")
    blocklists: tuple[BlocklistConfig, ...] = Field(
        (), description="known-hash lists (each: path, name, kind, pdq_radius); a matching image is dropped as "
                        "blocked_hash_match")
    provenance: bool = Field(True, description="read C2PA / IPTC / XMP / EXIF provenance and licence columns")

    # Decoding and staging.
    max_pixels: int = Field(89_478_485, ge=1, description="decompression-bomb limit (Pillow's default)")
    min_image_size: int = Field(0, ge=0, description="drop images whose shorter side is below this")
    max_aspect_ratio: float | None = Field(None, gt=0, description="drop images more elongated than this; None: no limit")
    image_size: int = Field(256, ge=1, description="target side in pixels for the resize (unused with resize_mode no)")
    resize_mode: Literal["no", "keep_ratio", "keep_ratio_largest", "center_crop", "border"] = Field(
        "border", description="img2dataset's modes: keep_ratio and center_crop fit the shorter side to image_size, "
                              "keep_ratio_largest and border the longer; center_crop crops to a square, border pads "
                              "to one with white; no keeps the original size")
    resize_only_if_bigger: bool = Field(False, description="leave images already no larger than image_size as they are")
    encode_format: Literal["jpg", "png", "webp"] = Field(
        "jpg", description="format of the staged images in the shards")
    encode_quality: int = Field(95, ge=1, le=100, description="jpg/webp quality (ignored for png)")
    decode_threads: int = Field(1, ge=1, description="threads per worker that decode and resize while it fetches")

    @model_validator(mode="after")
    def _timeouts_fit(self) -> CrawlConfig:
        if self.total_timeout_s < self.connect_timeout_s:
            raise ValueError("total_timeout_s must be at least connect_timeout_s")
        return self
