"""What compliance costs: per-image checks against staging itself, and crawl time with opt-outs on vs off.

    python bench/compliance.py                 # 40 photos at ~1 MP, 100k-entry lists, 8 origins x 50 URLs

Per image (one thread, median of 5 passes over every photo), as a ratio to ``stage_image`` on the same
bytes: the digest check against MD5 + SHA-1 + SHA-256 lists, the PDQ check (decode + hash + scan of a
100k-hash list), and the provenance extraction of a plain JPEG and of one carrying XMP. Crawl: the same
URLs over loopback with robots.txt + TDMRep on (each origin serving a robots.txt and a tdmrep.json)
and off, fresh Fetcher each run. Results go to bench/results/compliance.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "crawl"))
RESULTS = REPO / "bench" / "results"
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:rights><rdf:Alt><rdf:li>(c) A</rdf:li>'
       b'</rdf:Alt></dc:rights></rdf:Description></rdf:RDF></x:xmpmeta>')


def photos(count: int) -> list[bytes]:
    from PIL import Image, ImageOps

    from pipelines.cli.corpus import load_photos

    out = []
    for name, (img, _) in sorted(load_photos().items()):
        scale = (1e6 / (img.width * img.height)) ** 0.5
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
        for variant in (img, ImageOps.mirror(img), ImageOps.flip(img)):
            buf = io.BytesIO()
            variant.save(buf, "JPEG", quality=90)
            out.append(buf.getvalue())
    return (out * (count // len(out) + 1))[:count]


def per_image_ms(fn, items: list, passes: int = 5) -> float:
    times = []
    for _ in range(passes):
        start = time.perf_counter()
        for item in items:
            fn(item)
        times.append((time.perf_counter() - start) / len(items) * 1e3)
    return statistics.median(times)


def write_lists(folder: Path, entries: int) -> tuple:
    import os

    from crawl.config import BlocklistConfig

    digests, pdq = folder / "digests.txt", folder / "pdq.txt"
    digests.write_text("".join(os.urandom(n).hex() + "\n" for _ in range(entries // 3) for n in (16, 20, 32)))
    pdq.write_text("".join(os.urandom(32).hex() + "\n" for _ in range(entries)))
    return (BlocklistConfig(path=str(digests)),), (BlocklistConfig(path=str(pdq), kind="pdq"),)


def image_costs(data: list[bytes], entries: int) -> dict:
    from crawl.blocklist import load_blocklists
    from crawl.config import CrawlConfig
    from crawl.image import stage_image
    from crawl.provenance import provenance

    config = CrawlConfig()
    with tempfile.TemporaryDirectory() as tmp:
        digest_cfg, pdq_cfg = write_lists(Path(tmp), entries)
        digests, pdq = load_blocklists(digest_cfg), load_blocklists(pdq_cfg)
    with_xmp = [d[:2] + b"\xff\xe1" + (len(XMP) + 31).to_bytes(2, "big") + b"http://ns.adobe.com/xap/1.0/\x00" + XMP
                + d[2:] for d in data]
    stage = per_image_ms(lambda d: stage_image(d, config), data)
    rows = {"stage_image": stage,
            "digest_check_md5_sha1_sha256": per_image_ms(lambda d: digests.match(d, config.max_pixels), data),
            f"pdq_check_{entries}_hashes": per_image_ms(lambda d: pdq.match(d, config.max_pixels), data, passes=3),
            "provenance_plain_jpeg": per_image_ms(lambda d: provenance(d, "image/jpeg"), data),
            "provenance_jpeg_with_xmp": per_image_ms(lambda d: provenance(d, "image/jpeg"), with_xmp)}
    return {k: {"ms_per_image": round(v, 3), "ratio_to_stage_image": round(v / stage, 3)} for k, v in rows.items()}


def crawl_time(origins: int, per_origin: int, enabled: bool) -> dict:
    from contextlib import ExitStack

    from siteserver import Answer, Site, SiteSpec

    from crawl.config import CrawlConfig
    from crawl.fetch import Fetcher
    from crawl.ingest import crawl_rows

    spec = SiteSpec(robots=Answer(200, b"User-agent: *\nDisallow: /private/\n"),
                    tdmrep=Answer(200, b'[{"location": "/reserved/", "tdm-reservation": 1}]'))
    config = CrawlConfig(allow_private_addresses=True, image_size=64, robots_txt={"enabled": enabled},
                         tdmrep={"enabled": enabled})
    with ExitStack() as stack:
        sites = [stack.enter_context(Site(spec)) for _ in range(origins)]
        rows = [{"sample_id": f"{i}", "url": site.url(f"/img/{i}.jpg")} for site in sites for i in range(per_origin)]
        start = time.perf_counter()
        outcomes = asyncio.run(crawl_rows(rows, Fetcher(config), config))
        wall = time.perf_counter() - start
        site_files = sum(s.hits["/robots.txt"] + s.hits["/.well-known/tdmrep.json"] for s in sites)
    ok = sum(r["status"] == "success" for r, _ in outcomes)
    return {"wall_s": round(wall, 3), "urls": len(rows), "success": ok, "site_file_requests": site_files}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--origins", type=int, default=8)
    parser.add_argument("--per-origin", type=int, default=50)
    args = parser.parse_args()
    costs = image_costs(photos(args.photos), args.entries)
    crawl_time(2, 5, True)  # warm-up: imports, thread pool
    off, on = crawl_time(args.origins, args.per_origin, False), crawl_time(args.origins, args.per_origin, True)
    print(f"{'per image (1 MP JPEG)':<36}{'ms':>10}{'x stage_image':>16}")
    for name, row in costs.items():
        print(f"{name:<36}{row['ms_per_image']:>10.3f}{row['ratio_to_stage_image']:>16.3f}")
    print(f"\n{'crawl ' + str(on['urls']) + ' URLs, ' + str(args.origins) + ' origins':<36}{'wall s':>10}{'site files':>16}")
    for name, row in (("robots.txt + TDMRep off", off), ("robots.txt + TDMRep on", on)):
        print(f"{name:<36}{row['wall_s']:>10.3f}{row['site_file_requests']:>16}")
    print(f"{'ratio on/off':<36}{on['wall_s'] / off['wall_s']:>10.3f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"args": vars(args), "per_image": costs, "crawl": {"off": off, "on": on,
                                                                 "ratio_on_off": round(on["wall_s"] / off["wall_s"], 3)}}
    (RESULTS / "compliance.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
