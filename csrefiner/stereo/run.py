"""`csrefiner cgef` as a library call: build the cell-bin matrix, then write the GEF (and AnnData) together:
either every requested output appears or none does."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.io import atomic_path, check_writable
from csrefiner.io.frames import resolve_pixel_size, stereo_pixel_size
from csrefiner.stereo.cellbin import CellBinMatrix, build_cellbin
from csrefiner.stereo.source import CHUNK_ROWS

OVERVIEW_PIXELS = 1 << 24  # largest mask level coloured into the h5ad's image (a preview is far smaller)


def cgef(
    matrix: str | os.PathLike,
    mask: str | os.PathLike | np.ndarray,
    out: str | os.PathLike,
    h5ad: str | os.PathLike | None = None,
    block_size: int = 256,
    force: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    pixel_size_um: float | None = None,
    lowres_image: str | os.PathLike | None = None,
) -> CellBinMatrix:
    """Pixel size: `pixel_size_um`, else the mask's own (OME/TIFF tags), else the matrix's DNB pitch (0.5 um);
    `lowres_image` (the stitch preview PNG) becomes the h5ad's scanpy low-res image."""
    from csrefiner.io import read_image
    from csrefiner.stereo.cgef_writer import write_cgef

    out = check_writable(out, force)
    if h5ad is not None:
        h5ad = check_writable(h5ad, force)
        if Path(h5ad).resolve() == out.resolve():
            raise CsrefinerError(f"{out}: --out and --h5ad name the same file; give the AnnData its own .h5ad path")
        from csrefiner.stereo.anndata_writer import require_anndata

        require_anndata()  # fail before the work, not after it
    if block_size < 1:
        raise CsrefinerError(f"--block-size {block_size}: must be a positive number of pixels")
    out.resolve().parent.mkdir(parents=True, exist_ok=True)
    um = resolve_pixel_size(pixel_size_um, None if isinstance(mask, np.ndarray) else mask)
    lowres = None
    if h5ad is not None:  # only the AnnData carries an image
        lowres = read_image(lowres_image) if lowres_image is not None else _overview(mask)
    m = build_cellbin(matrix, mask, block_size=block_size, chunk_rows=chunk_rows, workdir=out.resolve().parent)
    um = um or stereo_pixel_size(m.resolution)
    with atomic_path(out, force=force) as tmp:
        write_cgef(m, tmp, force=True, attrs=frame_attrs(um))
        if h5ad is not None:
            from csrefiner.stereo.anndata_writer import write_h5ad

            write_h5ad(m, h5ad, force=force, pixel_size_um=um, lowres=lowres)
    return m


def _overview(mask) -> np.ndarray | None:
    """Without a preview, the mask's smallest pyramid level coloured per cell (what `stitch --preview` draws);
    none when that level is still chip-sized (a mask without a pyramid): colouring it would cost ~50 B per pixel."""
    if isinstance(mask, np.ndarray):
        return None
    import tifffile

    from csrefiner.wsi.preview import label_colours

    try:
        with tifffile.TiffFile(mask) as tif:
            level = tif.series[0].levels[-1]
            if np.prod(level.shape) > OVERVIEW_PIXELS:
                return None
            return label_colours(np.squeeze(level.asarray()))
    except Exception:  # not a TIFF pyramid: the h5ad simply has no image; cgef reports the mask's own errors
        return None


def frame_attrs(pixel_size_um: float) -> dict:
    """Extra root attributes (readers ignore unknown ones): the mask pixel size; the GEF is in the chip frame."""
    return {
        "csrefiner_pixel_size_um": np.array([pixel_size_um], np.float64),
        "csrefiner_frame": np.array([b"chip = mask pixel + (offsetX, offsetY)"], dtype="S64"),
    }


def summary(m: CellBinMatrix) -> list[str]:
    s = m.stats
    in_cells = s["cell_count"] / s["total_count"] if s["total_count"] else 0.0
    lines = [
        f"{m.n_cells:,} cells x {m.n_genes:,} genes, {m.count.size:,} non-zero entries "
        f"(from {s['records']:,} {s['kind']} records, extent {s['matrix_extent']}; mask {m.width} x {m.height} px "
        f"at offset {m.offset_x},{m.offset_y})",
        f"counts in cells {s['cell_count']:,} of {s['total_count']:,} ({in_cells:.1%}); background "
        f"{s['background_count']:,} counts in {s['background_records']:,} records; DNBs in cells "
        f"{s['dnbs_in_cells']:,} of {s['dnbs']:,}",
    ]
    if s.get("seconds"):
        sec = s["seconds"]
        lines.append(
            f"matrix + mask in {sec:.1f} s: {s['records'] / sec:,.0f} records/s, "
            f"{m.width * m.height / sec / 1e6:,.1f} Mpx/s of mask"
        )
    empty = int(np.count_nonzero(np.diff(m.indptr) == 0))
    if empty:
        lines.append(f"{empty:,} cells have no counts (kept, geneCount 0)")
    if s.get("clipped_entries"):
        lines.append(
            f"warning: {s['clipped_entries']:,} cell/gene counts exceed 65,535 and are clipped in the GEF "
            "(uint16 format); the .h5ad keeps them exact"
        )
    return lines
