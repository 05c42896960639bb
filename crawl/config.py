"""What to ingest and how to fetch and stage it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from manifests.config import StrictModel


class InputConfig(StrictModel):
    """The input: a URL list (img2dataset's convention), img2dataset-style WebDataset shards, or a folder."""

    kind: Literal["url_list", "webdataset", "folder"] = "url_list"
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


AI_CRAWLER_TOKENS = ("GPTBot", "ChatGPT-User", "CCBot", "Google-Extended", "anthropic-ai", "ClaudeBot",
                     "Claude-Web", "Applebot-Extended", "Bytespider", "PerplexityBot", "meta-externalagent",
                     "FacebookBot", "cohere-ai", "Diffbot", "Omgilibot", "Amazonbot", "img2dataset")


class RobotsTxtConfig(StrictModel):
    """robots.txt (RFC 9309), fetched once per origin per worker through the same guard as images."""

    enabled: bool = True
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

    enabled: bool = True
    ttl_s: float = Field(86_400.0, gt=0)


class BlocklistConfig(StrictModel):
    """One known-hash list: hex digests one per line (MD5, SHA-1 or SHA-256 by length), or PDQ hashes."""

    path: str
    name: str | None = Field(None, description="name in the manifest and run.json (default: the file's stem)")
    kind: Literal["digest", "pdq"] = "digest"
    pdq_radius: int = Field(31, ge=0, le=256, description="PDQ match when the Hamming distance is at most this")

    @property
    def label(self) -> str:
        return self.name or Path(self.path).stem


class CrawlConfig(StrictModel):
    """Fetching and decoding. Defaults follow img2dataset where it has one."""

    # Network.
    concurrency: int = Field(64, ge=1, description="requests in flight per ingest worker")
    per_host_concurrency: int = Field(16, ge=1)
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(20.0, gt=0)
    total_timeout_s: float = Field(60.0, gt=0)
    retries: int = Field(2, ge=0, description="extra attempts on timeouts, connection errors, 408, 429 and 5xx")
    backoff_s: float = Field(0.5, ge=0, description="first retry waits about this long, doubling each time")
    max_backoff_s: float = Field(30.0, ge=0)
    max_retry_after_s: float = Field(
        60.0, ge=0, description="a Retry-After longer than this is not waited for: the row fails instead"
    )
    dns_cache_ttl_s: float = Field(300.0, ge=0, description="per-worker DNS cache lifetime (failures: 30 s at most)")
    max_redirects: int = Field(5, ge=0)
    max_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="stop reading a body past this size")
    verify_tls: bool = Field(True, description="check https certificates; False accepts hosts with broken TLS")
    user_agent_token: str = "thresher"
    disallowed_header_directives: tuple[str, ...] = ("noai", "noimageai", "noml", "noindex", "noimageindex")
    allow_private_addresses: bool = Field(
        False, description="fetch loopback/private/link-local addresses (tests and the demo need loopback)"
    )

    # Compliance: opt-outs honoured before fetching, hash lists checked right after, provenance read at ingest.
    robots_txt: RobotsTxtConfig = RobotsTxtConfig()
    tdmrep: TdmRepConfig = TdmRepConfig()
    blocklists: tuple[BlocklistConfig, ...] = ()
    provenance: bool = Field(True, description="read C2PA / IPTC / XMP / EXIF provenance and licence columns")

    # Decoding and staging.
    max_pixels: int = Field(89_478_485, ge=1, description="decompression-bomb limit (Pillow's default)")
    min_image_size: int = Field(0, ge=0, description="drop images whose shorter side is below this")
    max_aspect_ratio: float | None = Field(None, gt=0, description="drop images more elongated than this; None: no limit")
    image_size: int = Field(256, ge=1)
    resize_mode: Literal["no", "keep_ratio", "keep_ratio_largest", "center_crop", "border"] = "border"
    resize_only_if_bigger: bool = False
    encode_format: Literal["jpg", "png", "webp"] = "jpg"
    encode_quality: int = Field(95, ge=1, le=100)
    decode_threads: int = Field(1, ge=1, description="threads per worker that decode and resize while it fetches")

    @model_validator(mode="after")
    def _timeouts_fit(self) -> CrawlConfig:
        if self.total_timeout_s < self.connect_timeout_s:
            raise ValueError("total_timeout_s must be at least connect_timeout_s")
        return self
