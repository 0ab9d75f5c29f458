"""csrefiner: fine-tune cell segmentation on a few patches, segment whole slides, build cell-bin matrices."""

__version__ = "0.1.0"
