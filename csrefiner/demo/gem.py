"""A Stereo-seq GEM for the generated slide, so the demo ends with a real cell-bin matrix (cgef + h5ad).

DNBs (one per pixel) are captured far more often inside nuclei than outside; each nucleus expresses the gene
programme of its region (easy / hard block), so the resulting cells x genes matrix has two populations.
Seeded; the gzip header carries no timestamp, so reruns write identical bytes.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

HEADER = "#FileFormat=GEMv0.1\n#SortedBy=None\n#BinSize=1\n#Stereo-seqChip=DEMO00001\n#OffsetX=0\n#OffsetY=0\n"


def gene_programmes(genes: int, rng: np.random.Generator) -> np.ndarray:
    """(2, genes) expression probabilities: each region favours its own half of the genes."""
    base = rng.gamma(0.6, 1.0, size=(2, genes))
    half = genes // 2
    base[0, :half] *= 6.0
    base[1, half:] *= 6.0
    return base / base.sum(axis=1, keepdims=True)


def write_gem(
    path: Path,
    labels: np.ndarray,
    hard_x0: int,
    genes: int = 40,
    seed: int = 0,
    p_cell: float = 0.35,
    p_background: float = 0.02,
) -> dict:
    """Write `path` (.gem.gz) for `labels` (the slide's ground truth); returns record / count totals."""
    rng = np.random.default_rng(seed + 7)
    h, w = labels.shape
    inside = labels > 0
    keep = rng.random(labels.shape) < np.where(inside, p_cell, p_background)
    keep[h - 1, w - 1] = True  # the matrix spans the whole image
    y, x = np.nonzero(keep)
    region = (x >= hard_x0).astype(np.int64)
    programmes = gene_programmes(genes, rng)
    noise = np.full(genes, 1.0 / genes)
    gene = np.empty(y.size, np.int64)
    cell = inside[y, x]
    for r in (0, 1):
        sel = cell & (region == r)
        gene[sel] = rng.choice(genes, size=int(sel.sum()), p=programmes[r])
    gene[~cell] = rng.choice(genes, size=int((~cell).sum()), p=noise)
    count = 1 + rng.poisson(0.6, y.size)
    lines = [
        f"GENE{g:03d}\t{a}\t{b}\t{c}\n" for g, a, b, c in zip(gene.tolist(), x.tolist(), y.tolist(), count.tolist())
    ]
    text = HEADER + "geneID\tx\ty\tMIDCount\n" + "".join(lines)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(text.encode())
    return {
        "records": int(y.size),
        "total_count": int(count.sum()),
        "in_nuclei_count": int(count[cell].sum()),
        "genes": genes,
    }
