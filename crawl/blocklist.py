"""Known-hash blocking: downloaded bytes -> the list they match, decided before anything is written.

A list file holds one hash per line (blank lines and ``#`` comments skipped; a line may carry more
fields after a comma or whitespace, as hash-sharing exports do). A ``digest`` list mixes MD5, SHA-1
and SHA-256 hex digests of the file bytes, told apart by length; a ``pdq`` list holds 256-bit PDQ
hashes (64 hex digits, ThreatExchange's bit order) matched within a Hamming radius. Digests are
checked first, so a digest match never decodes a pixel; PDQ needs pixels, decoded in memory only.
PDQ hashes of near-uniform images are noise (quality below ``pdq_min_quality``): those are not matched,
as ThreatExchange does.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image

from crawl.config import BlocklistConfig, CrawlConfig
from manifests import schema as col
from manifests.schema import Status

DIGEST_LENGTHS = {32: "md5", 40: "sha1", 64: "sha256"}
PDQ_MIN_QUALITY = 50  # ThreatExchange's threshold below which a PDQ hash says little about the image
PDQ_SIDE = 512  # ThreatExchange's hashers downsample to at most 512x512 first; hashes depend on it


class BlocklistError(ValueError):
    """A blocklist file is missing or has a line that is not a hash; the message names file and line."""


@dataclass(frozen=True)
class Match:
    name: str  # the list
    digest: str  # "md5:<hex>", "sha1:<hex>", "sha256:<hex>" or "pdq:<hex>"


@dataclass
class HashList:
    name: str
    digests: dict[str, frozenset[str]] = field(default_factory=dict)  # algorithm -> lowercase hex digests
    pdq: np.ndarray | None = None  # (4, n) uint64, one row per 64-bit word: a column scan is 3x a row scan
    radius: int = 0


def _is_hex(token: str) -> bool:
    return all(c in "0123456789abcdef" for c in token)


def _tokens(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BlocklistError(f"crawl.blocklists: cannot read {path}: {exc}") from None
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if line:
            found.append((number, line.replace(",", " ").split()[0].lower()))
    return found


def load_list(config: BlocklistConfig) -> HashList:
    """Parse one list file; a bad line raises ``BlocklistError`` naming the file, the line and the fix."""
    path = Path(config.path)
    listed = HashList(config.label, radius=config.pdq_radius)
    by_algo: dict[str, set[str]] = {}
    pdq_rows = []
    for number, token in _tokens(path):
        if config.kind == "pdq" and len(token) == 64 and _is_hex(token):
            pdq_rows.append(np.frombuffer(bytes.fromhex(token), dtype=">u8").astype(np.uint64))
        elif config.kind == "digest" and len(token) in DIGEST_LENGTHS and _is_hex(token):
            by_algo.setdefault(DIGEST_LENGTHS[len(token)], set()).add(token)
        else:
            want = "a 64-digit hex PDQ hash" if config.kind == "pdq" else "an MD5, SHA-1 or SHA-256 hex digest"
            raise BlocklistError(f"crawl.blocklists: {path}:{number}: {token[:80]!r} is not {want} "
                                 f"(kind: {config.kind}); fix or remove the line")
    listed.digests = {algo: frozenset(values) for algo, values in by_algo.items()}
    listed.pdq = np.ascontiguousarray(np.stack(pdq_rows).T) if pdq_rows else None
    return listed


def load_blocklists(configs: tuple[BlocklistConfig, ...]) -> Blocklists:
    names = [c.label for c in configs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise BlocklistError(f"crawl.blocklists: names {duplicated} are used twice; give each list its own name")
    return Blocklists(tuple(load_list(c) for c in configs))


@lru_cache(maxsize=4)
def worker_blocklists(configs: tuple[BlocklistConfig, ...]) -> Blocklists:
    """Loaded once per worker process and config."""
    return load_blocklists(configs)


def pdq_hex(bits: np.ndarray) -> str:
    """ThreatExchange's hex form of pdqhash's 256-bit vector (first bit most significant)."""
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


def pdq_of(data: bytes, max_pixels: int) -> tuple[np.ndarray, int] | None:
    """The PDQ bits and quality of encoded image bytes, decoded in memory; None when they do not decode.

    Undecodable bytes are not this check's business: staging records them as failed_to_decode.
    """
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > max_pixels:
            return None
        if img.format == "JPEG":
            img.draft("RGB", (PDQ_SIDE, PDQ_SIDE))  # DCT-scaled decode, still at least 512 on a side
        img = img.convert("RGB")
        img.thumbnail((PDQ_SIDE, PDQ_SIDE))
        pixels = np.asarray(img)
    except Exception:  # noqa: BLE001 -- stage_image decodes the same bytes next and records why they failed
        return None
    bits, quality = pdqhash.compute(pixels)
    return bits, int(quality)


def _popcount(values: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(values).astype(np.uint16)
    return np.unpackbits(np.ascontiguousarray(values).view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1, dtype=np.uint16)


def hamming(columns: np.ndarray, words: np.ndarray) -> np.ndarray:
    """Bit distance of every listed hash (``columns``: (4, n) uint64 words) to one hash (``words``: (4,))."""
    distance = _popcount(columns[0] ^ words[0])
    for i in range(1, len(words)):
        distance += _popcount(columns[i] ^ words[i])
    return distance


@dataclass(frozen=True)
class Blocklists:
    lists: tuple[HashList, ...] = ()

    @property
    def needs_pixels(self) -> bool:
        return any(h.pdq is not None for h in self.lists)

    def match(self, data: bytes, max_pixels: int) -> Match | None:
        """The first list that holds these bytes' digest, else the first PDQ list within its radius."""
        found = self._digest_match(data)
        if found is not None or not self.needs_pixels:
            return found
        hashed = pdq_of(data, max_pixels)
        if hashed is None or hashed[1] < PDQ_MIN_QUALITY:
            return None
        words = np.frombuffer(np.packbits(hashed[0].astype(np.uint8)).tobytes(), dtype=">u8").astype(np.uint64)
        for listed in self.lists:
            if listed.pdq is not None:
                distances = hamming(listed.pdq, words)
                if int(distances.min()) <= listed.radius:
                    return Match(listed.name, f"pdq:{pdq_hex(hashed[0])}")
        return None

    def _digest_match(self, data: bytes) -> Match | None:
        computed: dict[str, str] = {}
        for listed in self.lists:
            for algo, values in listed.digests.items():
                if algo not in computed:
                    computed[algo] = hashlib.new(algo, data).hexdigest()
                if computed[algo] in values:
                    return Match(listed.name, f"{algo}:{computed[algo]}")
        return None


def blocked_fields(data: bytes, crawl: CrawlConfig) -> dict | None:
    """The manifest fields of a ``blocked_hash_match`` row, or None when no list holds these bytes.

    Only digests and the list's name are recorded: the bytes themselves are dropped by the caller.
    """
    if not crawl.blocklists:
        return None
    found = worker_blocklists(crawl.blocklists).match(data, crawl.max_pixels)
    if found is None:
        return None
    algorithm = found.digest.split(":")[0]
    return {col.STATUS: Status.BLOCKED_HASH_MATCH, col.ERROR: f"{algorithm} match in blocklist {found.name!r}",
            col.BYTES: len(data), col.SHA256: hashlib.sha256(data).hexdigest(),
            col.BLOCKLIST: found.name, col.BLOCKLIST_DIGEST: found.digest}
