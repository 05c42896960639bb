"""Provenance and licence columns from generated files (XMP, EXIF, IPTC IIM, PNG text, a C2PA manifest signed
with a throw-away certificate made here); odd or hostile metadata never fails a row."""

from __future__ import annotations

import datetime
import io
import json
import struct

import polars as pl
import pytest
from crawl_support import fast_config
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from crawl.fetch import Fetched
from crawl.ingest import outcome
from crawl.provenance import provenance
from filters.config import FiltersConfig
from filters.decide import decide
from manifests import schema as col
from manifests.schema import Reason, Status

DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"
XMP = f"""<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:cc="http://creativecommons.org/ns#"
  xmlns:xmpRights="http://ns.adobe.com/xap/1.0/rights/" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
  Iptc4xmpExt:DigitalSourceType="{DST}compositeSynthetic">
 <dc:rights><rdf:Alt><rdf:li xml:lang="x-default">(c) 2026 Jane Doe</rdf:li></rdf:Alt></dc:rights>
 <dc:creator><rdf:Seq><rdf:li>Jane Doe</rdf:li></rdf:Seq></dc:creator>
 <cc:license rdf:resource="https://creativecommons.org/licenses/by/4.0/"/>
</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>""".encode()


def image(seed: int = 0) -> Image.Image:
    img = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    img.paste((30 + seed, 120, 200), (40, 40, 160, 140))
    return img


def jpeg_bytes(img: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def with_segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    """Insert an APPn segment right after SOI."""
    return jpeg[:2] + struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload + jpeg[2:]


def iptc_app13(fields: dict[tuple[int, int], bytes]) -> bytes:
    """A Photoshop IRB (APP13) holding IPTC IIM datasets, as photo tools write them."""
    iim = b"".join(b"\x1c" + bytes(k) + struct.pack(">H", len(v)) + v for k, v in fields.items())
    irb = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iim)) + iim
    return b"Photoshop 3.0\x00" + irb + (b"\x00" if len(iim) % 2 else b"")


def row_for(data: bytes) -> dict:
    record, sample = outcome({col.SAMPLE_ID: "0", col.URL: "http://h/x"}, Fetched(Status.SUCCESS, data=data, attempts=1),
                             fast_config())
    return record


def test_xmp_in_a_jpeg() -> None:
    row = row_for(jpeg_bytes(image(), xmp=XMP))
    assert row[col.STATUS] == Status.SUCCESS
    assert row[col.COPYRIGHT] == "(c) 2026 Jane Doe" and row[col.ATTRIBUTION] == "Jane Doe"
    assert row[col.LICENSE] == "https://creativecommons.org/licenses/by/4.0/"
    assert row[col.DIGITAL_SOURCE_TYPE] == "compositeSynthetic" and row[col.AI_GENERATED_DECLARED] is True
    assert row[col.C2PA_PRESENT] is False and row[col.C2PA_CLAIM_GENERATOR] is None


def test_exif_and_iptc_iim() -> None:
    exif = Image.Exif()
    exif[0x8298], exif[0x013B] = "EXIF Copyright Holder", "EXIF Artist"
    row = row_for(jpeg_bytes(image(), exif=exif))
    assert (row[col.COPYRIGHT], row[col.ATTRIBUTION]) == ("EXIF Copyright Holder", "EXIF Artist")
    iptc = with_segment(jpeg_bytes(image()), 0xED, iptc_app13({(2, 116): b"IPTC Notice", (2, 80): b"IPTC By-line"}))
    row = row_for(iptc)
    assert row[col.STATUS] == Status.SUCCESS
    assert (row[col.COPYRIGHT], row[col.ATTRIBUTION]) == ("IPTC Notice", "IPTC By-line")
    assert row[col.AI_GENERATED_DECLARED] is False and row[col.LICENSE] is None


def test_png_text_and_itxt_xmp() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Copyright", "PNG Copyright")
    info.add_text("XML:com.adobe.xmp", XMP.replace(b"compositeSynthetic", b"trainedAlgorithmicMedia").decode(), zip=False)
    buf = io.BytesIO()
    image().save(buf, "PNG", pnginfo=info)
    row = row_for(buf.getvalue())
    assert row[col.COPYRIGHT] == "(c) 2026 Jane Doe"  # XMP first
    assert row[col.DIGITAL_SOURCE_TYPE] == "trainedAlgorithmicMedia" and row[col.AI_GENERATED_DECLARED]


def test_a_plain_image_has_null_columns() -> None:
    row = row_for(jpeg_bytes(image()))
    assert row[col.STATUS] == Status.SUCCESS and row[col.C2PA_PRESENT] is False
    assert all(row[c] is None for c in (col.LICENSE, col.ATTRIBUTION, col.COPYRIGHT, col.DIGITAL_SOURCE_TYPE))


# --- C2PA, signed here with a throw-away certificate chain ------------------------------------------

def throwaway_signer():
    """An ES256 signer: a CA and an end-entity certificate made now, valid for a day, never stored."""
    c2pa = pytest.importorskip("c2pa")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test")])

    now = datetime.datetime.now(datetime.timezone.utc)
    usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
                 encipher_only=False, decipher_only=False)

    def cert(subject, issuer, key, signing_key, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **usage),
                                  critical=True))
        if not ca:  # what C2PA asks of a signing certificate: an EKU it lists, and key identifiers
            builder = (builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
                       .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
                                      critical=False)
                       .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert(name("Throw-away CA"), name("Throw-away CA"), ca_key, ca_key, ca=True)
    leaf = cert(name("Throw-away signer"), ca.subject, key, ca_key, ca=False)
    chain = leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return c2pa, c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, pem, None))


def c2pa_signed(source: bytes, source_type: str) -> bytes:
    c2pa, signer = throwaway_signer()
    manifest = {"claim_generator_info": [{"name": "thresher-test-generator", "version": "2.1"}], "title": "test",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.created", "digitalSourceType": DST + source_type}]}}]}
    out = io.BytesIO()
    with c2pa.Builder(json.dumps(manifest)) as builder:
        builder.sign(signer, "image/jpeg", io.BytesIO(source), out)
    return out.getvalue()


def test_a_c2pa_manifest_signed_with_a_throwaway_certificate() -> None:
    row = row_for(c2pa_signed(jpeg_bytes(image()), "trainedAlgorithmicMedia"))
    assert row[col.STATUS] == Status.SUCCESS
    assert row[col.C2PA_PRESENT] is True
    assert row[col.C2PA_CLAIM_GENERATOR] == "thresher-test-generator/2.1"
    assert row[col.DIGITAL_SOURCE_TYPE] == "trainedAlgorithmicMedia" and row[col.AI_GENERATED_DECLARED] is True


def test_a_c2pa_capture_is_not_declared_ai() -> None:
    row = row_for(c2pa_signed(jpeg_bytes(image(1)), "digitalCapture"))
    assert row[col.C2PA_PRESENT] is True and row[col.AI_GENERATED_DECLARED] is False


# --- odd metadata never fails a row -----------------------------------------------------------------

BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
                  b'<x:xmpmeta xmlns:x="adobe:ns:meta/">&b;</x:xmpmeta>')
ODD = {
    "corrupt_exif": (0xE1, b"Exif\x00\x00" + b"MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x00" * 20),
    "broken_xmp": (0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><rdf:RDF><unclosed></x:xmpmeta>"),
    "entity_xmp": (0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + BILLION_LAUGHS),
    "fake_c2pa": (0xEB, b"JP\x00\x11\x00\x00\x00\x01jumbc2pa garbage that is no manifest store"),
    "bad_iptc": (0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\xff\xff\x1c\x02"),
    "huge_value": (0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + XMP.replace(b"Jane Doe</rdf:li></rdf:Seq>",
                                                                           b"J" * 60_000 + b"</rdf:li></rdf:Seq>")),
}


@pytest.mark.parametrize("kind", list(ODD))
def test_odd_metadata_never_fails_a_row(kind: str) -> None:
    marker, payload = ODD[kind]
    row = row_for(with_segment(jpeg_bytes(image()), marker, payload))
    assert row[col.STATUS] == Status.SUCCESS, row[col.ERROR]
    assert row[col.C2PA_PRESENT] is False
    if kind == "huge_value":
        assert len(row[col.ATTRIBUTION]) == 1000


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=2048), st.sampled_from([None, "image/jpeg", "image/png", "image/webp"]))
def test_provenance_never_raises(junk: bytes, mime: str | None) -> None:
    for data in (junk, b"<x:xmpmeta>" + junk + b"</x:xmpmeta>", b"c2pa" + junk):
        found = provenance(data, mime)
        assert found[col.C2PA_PRESENT] in (True, False) and found[col.AI_GENERATED_DECLARED] in (True, False)


def test_drop_ai_generated_rule() -> None:
    frame = pl.DataFrame({col.SAMPLE_ID: ["a", "b", "c"], col.STATUS: [Status.SUCCESS] * 3,
                          col.CAPTION: ["a fine photo"] * 3, col.ORIGINAL_WIDTH: [400] * 3,
                          col.ORIGINAL_HEIGHT: [400] * 3, col.AI_GENERATED_DECLARED: [True, False, None]})
    kept = decide(frame, FiltersConfig(rules={"drop_ai_generated": True})).collect()
    assert kept[col.KEEP].to_list() == [False, True, True]
    assert kept[col.REJECT_REASONS].to_list()[0] == [Reason.AI_GENERATED]
    assert decide(frame, FiltersConfig()).collect()[col.KEEP].all()  # off by default
