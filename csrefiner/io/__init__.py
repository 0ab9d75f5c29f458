"""Shared I/O: images, uint32 label masks, file pairing, atomic outputs."""

from csrefiner.io.atomic import atomic_dir, atomic_path, check_writable, outputs_together, write_text
from csrefiner.io.guard import check_outputs
from csrefiner.io.images import as_labels, is_image_file, read_image, read_labels, write_image, write_labels
from csrefiner.io.pairing import (
    SlideCoords,
    image_mask_pairs,
    list_images,
    pair_folders,
    parse_coords,
    patch_name,
    safe_name,
    sample_key,
)

__all__ = [
    "SlideCoords",
    "as_labels",
    "atomic_dir",
    "atomic_path",
    "check_outputs",
    "check_writable",
    "image_mask_pairs",
    "is_image_file",
    "list_images",
    "outputs_together",
    "pair_folders",
    "parse_coords",
    "patch_name",
    "read_image",
    "read_labels",
    "safe_name",
    "sample_key",
    "write_image",
    "write_labels",
    "write_text",
]
