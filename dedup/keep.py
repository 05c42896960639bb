"""The keep policy over counted pairs: which samples survive, and which survivor each dropped one duplicates.

Exact links are equivalences, and the pairs table stores them as stars (``equal_key_pairs``: every
member paired with the group's smallest id; an oversized LSH bucket likewise pairs identical
signatures with one leader). A policy that walks direct links only lets a star's leaves through as
soon as its centre is dropped by another link. So the walk works on classes:

- an *image class* is a set of samples with identical bytes or pixels (the exact detectors). An
  image link (pHash, SSCD, ...) from any member is a link of the whole class, and a class keeps at
  most one member;
- a *caption class* is a set of samples whose caption signatures are identical (a MinHash pair at
  similarity 1). A caption link from any member is a link of the whole class, and a class keeps at
  most one member.

Caption links do not cross image classes (two rows with the same picture under different captions
are one picture, not one caption), and image links do not cross caption classes. That keeps the
greedy policy's point: a chain A~B~C where B shows A's picture under C's caption keeps A and C.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from manifests.schema import DupKind

SHA256, PIXELS, MINHASH = "sha256", "pixel_hash", "minhash"  # detector names (dedup.config.DETECTORS)
EXACT, IMAGE, CAPTION = DupKind.EXACT, DupKind.IMAGE, DupKind.CAPTION
SAME_SIGNATURE = 1.0 - 1e-6  # MinHash similarity 1: every permutation agrees, i.e. identical signatures


def group_rows(keys: np.ndarray, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` sorted by key (stable) and the offsets of keys 0..n-1 in that order (CSR): the rows of
    key k are ``sorted_rows[offsets[k]:offsets[k + 1]]``."""
    order = np.argsort(keys, kind="stable")
    return rows[order], np.searchsorted(keys[order], np.arange(n + 1))


def union_find(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Root of each of ``n`` nodes joined by edges (a, b); a root is the smallest node of its component.

    Vectorised hook-and-compress: hook the larger root of every edge under the smaller, then jump
    pointers until each node points at its root; repeat until no edge joins two roots.
    """
    parent = np.arange(n, dtype=np.int64)
    while True:
        ra, rb = parent[a], parent[b]
        differ = ra != rb
        if not differ.any():
            return parent
        np.minimum.at(parent, np.maximum(ra, rb)[differ], np.minimum(ra, rb)[differ])
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


@dataclass(frozen=True)
class Classes:
    """Per node: its image class, its byte class (sha256 only) and its caption class, each a root node."""

    image: np.ndarray
    sha256: np.ndarray
    caption: np.ndarray

    @classmethod
    def of(cls, n: int, a: np.ndarray, b: np.ndarray, detector: np.ndarray, kind: np.ndarray,
           similarity: np.ndarray) -> Classes:
        exact = kind == EXACT
        same_caption = (detector == MINHASH) & (similarity >= SAME_SIGNATURE)
        sha = detector == SHA256
        return cls(union_find(n, a[exact], b[exact]), union_find(n, a[sha], b[sha]),
                   union_find(n, a[same_caption], b[same_caption]))


ROUNDS = 32  # rounds of the parallel greedy before the nodes still undecided are walked one by one
NONE = np.iinfo(np.int64).max  # no conflicting node: the least of nothing


@dataclass(frozen=True)
class _Hubs:
    """The conflict graph in hub terms: per node its image and caption class (its two hubs); the image links
    between image classes and the caption links between caption classes, each both ways."""

    image: np.ndarray
    caption: np.ndarray
    image_links: np.ndarray  # (2, m): from-hub, to-hub
    caption_links: np.ndarray

    @classmethod
    def of(cls, classes: Classes, a: np.ndarray, b: np.ndarray, kind: np.ndarray) -> _Hubs:
        def both_ways(hub: np.ndarray, on: np.ndarray) -> np.ndarray:
            x, y = hub[a[on]], hub[b[on]]
            apart = x != y  # a link inside a class adds no conflict
            return np.stack([np.concatenate([x[apart], y[apart]]), np.concatenate([y[apart], x[apart]])])
        image = (kind == IMAGE) | (kind == EXACT) | (kind == DupKind.SEMANTIC)  # semantic: a look-alike picture
        return cls(classes.image, classes.caption, both_ways(classes.image, image),
                   both_ways(classes.caption, kind == CAPTION))

    def least(self, nodes: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
        """For each node of ``at``: the least of ``values`` (one per node of ``nodes``) over the nodes of
        ``nodes`` it conflicts with, itself included; ``NONE`` where it conflicts with none of them."""
        found = np.full(len(at), NONE, np.int64)
        for hub, links in ((self.image, self.image_links), (self.caption, self.caption_links)):
            per_hub = np.full(len(hub), NONE, np.int64)
            np.minimum.at(per_hub, hub[nodes], values)
            reach = per_hub.copy()
            np.minimum.at(reach, links[0], per_hub[links[1]])
            np.minimum(found, reach[hub[at]], out=found)
        return found

    def live(self, undecided: np.ndarray) -> _Hubs:
        """The same graph less the links with an end hub no undecided node is in (they decide nothing more)."""
        def kept(hub: np.ndarray, links: np.ndarray) -> np.ndarray:
            has = np.zeros(len(hub), bool)
            has[hub[undecided]] = True
            return links[:, has[links[0]] & has[links[1]]]
        return _Hubs(self.image, self.caption, kept(self.image, self.image_links),
                     kept(self.caption, self.caption_links))


def keep_greedy(order: np.ndarray, classes: Classes, a: np.ndarray, b: np.ndarray, kind: np.ndarray,
                rounds: int = ROUNDS) -> np.ndarray:
    """Survivor of each node, walking nodes best-ranked first (``order``).

    A node is kept unless its image class or caption class already keeps a sample, or an image link
    of its image class or a caption link of its caption class reaches a class that keeps one; then
    it duplicates the best-ranked of those kept samples.

    That walk's kept set is the lexicographically first maximal independent set of the conflict graph
    (two nodes conflict when they share a hub -- image or caption class -- or a link joins their hubs),
    which rounds give exactly (Blelloch, Fineman and Shun, SPAA 2012; ``dedup.giant`` runs the same
    rounds as tasks): keep every undecided node that beats every undecided node it conflicts with, drop
    every node that conflicts with a kept one, repeat. A round is a few array passes over what is still
    undecided, and random-like rankings finish in a few rounds; a chain ranked along itself takes a
    round per two links, so after ``rounds`` rounds the nodes left are walked one by one. A dropped
    node's survivor is the best-ranked kept node it conflicts with: the walk met that one first, and
    had kept it by then.
    """
    n = len(order)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    every = live = _Hubs.of(classes, a, b, kind)
    kept, undecided = np.zeros(n, bool), np.arange(n)
    for _ in range(rounds):
        if not len(undecided):
            break
        won = undecided[live.least(undecided, rank[undecided], undecided) == rank[undecided]]
        kept[won] = True
        undecided = undecided[live.least(won, rank[won], undecided) == NONE]
        live = live.live(undecided)
    if len(undecided):  # none of them conflicts with a node kept so far: walk them among themselves
        _walk(undecided[np.argsort(rank[undecided])], kept, live)
    survivors = np.flatnonzero(kept)
    return order[every.least(survivors, rank[survivors], np.arange(n))]


def _walk(nodes: np.ndarray, kept: np.ndarray, hubs: _Hubs) -> None:
    """The sequential walk over ``nodes`` (best first): each is kept unless it conflicts with a node kept
    before it in the walk. It runs on Python lists: per node a few list reads, where numpy's per-call
    overhead on arrays of a handful of entries cost ~20 us a node."""
    n = len(kept)
    img_dst, img_ptr = (x.tolist() for x in group_rows(hubs.image_links[0], hubs.image_links[1], n))
    cap_dst, cap_ptr = (x.tolist() for x in group_rows(hubs.caption_links[0], hubs.caption_links[1], n))
    image_of, caption_of = hubs.image.tolist(), hubs.caption.tolist()
    kept_image, kept_caption = [False] * n, [False] * n  # per image / caption class root: keeps a node
    for v in nodes.tolist():
        ic, cc = image_of[v], caption_of[v]
        if not (kept_image[ic] or kept_caption[cc] or any(kept_image[c] for c in img_dst[img_ptr[ic]:img_ptr[ic + 1]])
                or any(kept_caption[c] for c in cap_dst[cap_ptr[cc]:cap_ptr[cc + 1]])):
            kept[v] = kept_image[ic] = kept_caption[cc] = True


def keep_per_component(order: np.ndarray, component: np.ndarray) -> np.ndarray:
    """Survivor of each node: the best-ranked node of its connected component (``component``: root per node)."""
    roots, first = np.unique(component[order], return_index=True)
    best = np.full(len(order), -1, np.int64)
    best[roots] = order[first]
    return best[component]
