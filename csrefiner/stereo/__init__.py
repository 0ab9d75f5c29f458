"""Stereo-seq matrices: stream GEM / bin1 GEF records, join them with a uint32 instance mask into a cell-bin
matrix, and write it as the cell-bin GEF that gefpy/stereopy read, and as AnnData."""

from csrefiner.stereo.cellbin import CellBinMatrix, build_cellbin
from csrefiner.stereo.matrix import open_matrix
from csrefiner.stereo.source import MatrixSource, RecordChunk

__all__ = ["CellBinMatrix", "MatrixSource", "RecordChunk", "build_cellbin", "open_matrix"]
