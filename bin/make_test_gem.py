#!/usr/bin/env python3
"""Write a small deterministic Stereo-seq GEM (gzip) covering a WIDTH x HEIGHT image: test data for `cgef`.

Every `--step`-th pixel carries one to three genes with counts from a fixed formula (no randomness), and the
far corner is always present so the matrix extent equals the image extent. The gzip header has no timestamp,
so reruns produce identical bytes (Nextflow -resume, nf-test snapshots).
"""

import argparse
import gzip
import io


def records(width: int, height: int, step: int, genes: int):
    coords = [(x, y) for y in range(0, height, step) for x in range(0, width, step)]
    if (width - 1, height - 1) not in coords:
        coords.append((width - 1, height - 1))
    for x, y in coords:
        for k in range(1 + (x * 7 + y * 3) % 3):
            gene = (x * 31 + y * 17 + k * 5) % genes
            yield f"GENE{gene:03d}\t{x}\t{y}\t{1 + (x + y + k) % 4}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--step", type=int, default=2, help="pixel spacing of the records")
    parser.add_argument("--genes", type=int, default=24)
    parser.add_argument("--out", required=True, help="output .gem.gz")
    a = parser.parse_args()
    text = io.StringIO()
    text.write("#FileFormat=GEMv0.1\n#SortedBy=None\n#BinSize=1\n#Stereo-seqChip=TEST00001\n#OffsetX=0\n#OffsetY=0\n")
    text.write("geneID\tx\ty\tMIDCount\n")
    text.writelines(records(a.width, a.height, a.step, a.genes))
    with open(a.out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(text.getvalue().encode())


if __name__ == "__main__":
    main()
