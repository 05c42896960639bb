"""Original bytes -> provenance and licence columns: C2PA, IPTC DigitalSourceType, copyright, creator, licence.

Sources, first found wins per column: XMP (``dc:rights``, ``dc:creator``, ``cc:license``,
``xmpRights:WebStatement``, ``cc:attributionName``, ``Iptc4xmpExt:DigitalSourceType``), EXIF
(``Copyright``, ``Artist``), IPTC IIM (2:116 Copyright Notice, 2:80 By-line), PNG text chunks, and an
embedded C2PA manifest (its claim generator and the ``digitalSourceType`` of its actions). Metadata is
what a file says about itself, unverified: a signature that does not validate still yields the claim.
Odd metadata never fails a row: an extractor that cannot read its part leaves its columns null.
"""

from __future__ import annotations

import io
import json
import os
import re
import xml.etree.ElementTree as ET
from functools import lru_cache

from PIL import Image, IptcImagePlugin

from manifests import schema as col

# IPTC NewsCodes digital source types that declare generative-AI (or wholly synthetic) origin.
AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia",
                             "compositeSynthetic"})
MAX_VALUE_CHARS = 1000  # a metadata field is a sentence, not a document: longer values are cut
MAX_XMP_BYTES = 1 << 20

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "xmpRights": "http://ns.adobe.com/xap/1.0/rights/",
    "cc": "http://creativecommons.org/ns#",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
}
XMP_FIELDS = {  # column -> XMP properties, in order of preference
    col.COPYRIGHT: ("dc:rights",),
    col.ATTRIBUTION: ("dc:creator", "cc:attributionName"),
    col.LICENSE: ("cc:license", "xmpRights:WebStatement"),
    col.DIGITAL_SOURCE_TYPE: ("Iptc4xmpExt:DigitalSourceType",),
}
EXIF_COPYRIGHT, EXIF_ARTIST = 0x8298, 0x013B
IPTC_COPYRIGHT, IPTC_BYLINE = (2, 116), (2, 80)
COLUMNS = (col.C2PA_PRESENT, col.C2PA_CLAIM_GENERATOR, col.DIGITAL_SOURCE_TYPE, col.AI_GENERATED_DECLARED,
           col.LICENSE, col.ATTRIBUTION, col.COPYRIGHT)


def clean(value: object) -> str | None:
    """A metadata value as trimmed text: bytes decoded, NULs and padding dropped, length bounded."""
    if isinstance(value, (list, tuple)):
        value = "; ".join(filter(None, (clean(v) for v in value)))
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value[:MAX_VALUE_CHARS] or None


def source_type_term(value: str | None) -> str | None:
    """``http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia`` -> ``trainedAlgorithmicMedia``."""
    return value.rstrip("/").rsplit("/", 1)[-1] if value else None


def provenance(data: bytes, mime: str | None) -> dict:
    """Every provenance column for one image's original bytes (None where the file says nothing)."""
    found: dict = dict.fromkeys(COLUMNS)
    found[col.C2PA_PRESENT] = False
    for extract in (_from_c2pa, _from_xmp, _from_pillow):
        try:
            values = extract(data, mime)
        except Exception:  # noqa: BLE001 -- odd metadata must never fail a row: this part's columns stay null
            continue
        for key, value in values.items():
            if found.get(key) in (None, False) and value not in (None, False):
                found[key] = value
    found[col.DIGITAL_SOURCE_TYPE] = source_type_term(found[col.DIGITAL_SOURCE_TYPE])
    found[col.AI_GENERATED_DECLARED] = found[col.DIGITAL_SOURCE_TYPE] in AI_SOURCE_TYPES
    return found


# --- XMP ------------------------------------------------------------------------------------------

_XMP = re.compile(rb"<x:xmpmeta\b.*?</x:xmpmeta>|<rdf:RDF\b.*?</rdf:RDF>", re.DOTALL)


def _from_xmp(data: bytes, mime: str | None) -> dict:
    """The XMP packet, found by its markers in any container (JPEG APP1, PNG iTXt, WebP, TIFF)."""
    packet = _XMP.search(data)
    if packet is None or len(packet.group()) > MAX_XMP_BYTES or b"<!" in packet.group():
        return {}  # no packet, or one with a DTD/entities: nothing a photo's metadata needs
    root = ET.fromstring(packet.group())
    return {column: _first(root, props) for column, props in XMP_FIELDS.items()}


def _first(root: ET.Element, props: tuple[str, ...]) -> str | None:
    for prop in props:
        prefix, name = prop.split(":")
        tag = f"{{{NS[prefix]}}}{name}"
        for desc in root.iter(f"{{{NS['rdf']}}}Description"):
            value = desc.get(tag) or _element_value(desc.find(tag))
            if value:
                return value
    return None


def _element_value(element: ET.Element | None) -> str | None:
    if element is None:
        return None
    resource = element.get(f"{{{NS['rdf']}}}resource")
    if resource:
        return clean(resource)
    items = [li.text for li in element.iter(f"{{{NS['rdf']}}}li") if li.text]
    return clean(items if items else element.text)


# --- EXIF, IPTC IIM, PNG text -----------------------------------------------------------------------

def _from_pillow(data: bytes, mime: str | None) -> dict:
    img = Image.open(io.BytesIO(data))  # header only: no pixel is decoded
    exif = img.getexif()
    iptc = (IptcImagePlugin.getiptcinfo(img) or {}) if img.format == "JPEG" else {}
    text = (getattr(img, "text", None) or {}) if img.format == "PNG" else {}
    return {
        col.COPYRIGHT: clean(exif.get(EXIF_COPYRIGHT)) or clean(iptc.get(IPTC_COPYRIGHT)) or clean(text.get("Copyright")),
        col.ATTRIBUTION: clean(exif.get(EXIF_ARTIST)) or clean(iptc.get(IPTC_BYLINE)) or clean(text.get("Author")),
    }


# --- C2PA -----------------------------------------------------------------------------------------

@lru_cache(maxsize=2)
def _c2pa_context(pid: int):  # noqa: ANN202 -- c2pa is imported lazily: most images carry no manifest
    import c2pa

    # No network from a decode thread: remote manifests and OCSP would bypass the SSRF guard.
    settings = c2pa.Settings.from_json(json.dumps({"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}))
    return c2pa.Context(settings)


def _from_c2pa(data: bytes, mime: str | None) -> dict:
    """The active manifest's claim generator and the digital source type its actions declare."""
    if b"c2pa" not in data:  # the JUMBF label of every manifest store: no label, no manifest
        return {}
    import c2pa

    try:
        reader = c2pa.Reader(mime, io.BytesIO(data), context=_c2pa_context(os.getpid()))
    except c2pa.C2paError:
        return {}
    with reader:
        manifest = reader.get_active_manifest() or {}
    return {col.C2PA_PRESENT: bool(manifest), col.C2PA_CLAIM_GENERATOR: claim_generator(manifest),
            col.DIGITAL_SOURCE_TYPE: _action_source_type(manifest)}


def claim_generator(manifest: dict) -> str | None:
    """``claim_generator`` (C2PA 1.x) or the first ``claim_generator_info`` entry as ``name/version`` (2.x)."""
    if manifest.get("claim_generator"):
        return clean(manifest["claim_generator"])
    info = manifest.get("claim_generator_info") or []
    if info and isinstance(info[0], dict) and info[0].get("name"):
        return clean("/".join(str(info[0][k]) for k in ("name", "version") if info[0].get(k)))
    return None


def _action_source_type(manifest: dict) -> str | None:
    for assertion in manifest.get("assertions") or []:
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in (assertion.get("data") or {}).get("actions") or []:
                if action.get("digitalSourceType"):
                    return clean(action["digitalSourceType"])
    return None
