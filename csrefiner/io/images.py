"""Read images and instance label masks; write label masks as compressed uint32 TIFF.

Images come back as 2D grey (H, W) or RGB (H, W, 3) in their own dtype. Label masks always come back as
uint32: a whole slide has more than 65,535 cells, so labels are never cast down anywhere in csrefiner.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.io.atomic import atomic_path

IMAGE_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".png", ".jpg", ".jpeg")
TIFF_SUFFIXES = (".tif", ".tiff")
UINT32_MAX = np.iinfo(np.uint32).max


def is_image_file(path: str | os.PathLike) -> bool:
    name = Path(path).name.lower()
    return not name.startswith(".") and name.endswith(IMAGE_SUFFIXES)


def _read_raw(path: Path) -> np.ndarray:
    if not path.is_file():
        raise CsrefinerError(f"{path}: no such file")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            return tifffile.imread(path)
        import skimage.io

        return np.asarray(skimage.io.imread(path))
    except CsrefinerError:
        raise
    except Exception as exc:  # every reader has its own exception types; the user needs the file name
        raise CsrefinerError(
            f"{path}: cannot be read as an image ({type(exc).__name__}: {exc}); if it is damaged or incomplete, "
            "copy or export it again"
        ) from exc


def squeeze_to_2d(arr: np.ndarray) -> np.ndarray:
    """Drop singleton axes (T, Z, C of OME-TIFF) but never below two dimensions."""
    while arr.ndim > 2 and 1 in arr.shape:
        arr = arr.squeeze(axis=arr.shape.index(1))
    return arr


def _as_2d_or_rgb(arr: np.ndarray, path: Path) -> np.ndarray:
    arr = squeeze_to_2d(arr)
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # channel-first TIFF / OME-TIFF (C, Y, X)
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]  # drop alpha
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3):
        return arr
    raise CsrefinerError(
        f"{path}: shape {arr.shape} is neither a 2D grey image nor RGB; export one 2D plane (or RGB) of the slide"
    )


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a 2D grey or RGB image (TIFF, OME-TIFF, PNG, JPEG) in its own dtype."""
    path = Path(path)
    return _as_2d_or_rgb(_read_raw(path), path)


def as_labels(arr: np.ndarray, source: str = "label image") -> np.ndarray:
    """Validate an instance label array and return it as uint32 (no relabelling, no down-cast)."""
    arr = squeeze_to_2d(np.asarray(arr))
    if arr.ndim != 2:
        raise CsrefinerError(f"{source}: a label mask must be 2D, got shape {arr.shape}")
    if arr.dtype == bool:
        raise CsrefinerError(f"{source}: boolean mask is not an instance label image; label objects 1..N first")
    if not np.issubdtype(arr.dtype, np.integer):
        raise CsrefinerError(
            f"{source}: dtype {arr.dtype} is not an integer label image; save masks as uint16/uint32 instance labels"
        )
    if arr.size and np.issubdtype(arr.dtype, np.signedinteger) and arr.min() < 0:
        raise CsrefinerError(
            f"{source}: negative values ({arr.min()}) in a label image; labels must be 0 (background) or positive"
        )
    if arr.size and arr.dtype.itemsize > 4 and arr.max() > UINT32_MAX:
        raise CsrefinerError(f"{source}: label {arr.max()} exceeds uint32; renumber the objects 1..N")
    return arr.astype(np.uint32, copy=False)


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read an instance label mask as uint32; float, boolean, negative or multi-channel masks are errors."""
    path = Path(path)
    return as_labels(_read_raw(path), source=str(path))


def write_labels(
    path: str | os.PathLike, labels: np.ndarray, force: bool = False, pixel_size_um: float | None = None
) -> Path:
    """Write a uint32 instance mask as a zlib-compressed TIFF, atomically (resolution tags when the size is known)."""
    import tifffile

    from csrefiner.io.frames import tiff_resolution

    labels = as_labels(labels, source=str(path))
    with atomic_path(path, force=force) as tmp:
        tifffile.imwrite(
            tmp, labels, compression="zlib", photometric="minisblack", metadata=None, **tiff_resolution(pixel_size_um)
        )
    return Path(path)


def write_image(
    path: str | os.PathLike, image: np.ndarray, force: bool = False, pixel_size_um: float | None = None
) -> Path:
    """Write a grey or RGB image (TIFF compressed, PNG via scikit-image), atomically."""
    path = Path(path)
    with atomic_path(path, force=force) as tmp:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            rgb = image.ndim == 3 and image.shape[-1] == 3
            from csrefiner.io.frames import tiff_resolution

            tifffile.imwrite(
                tmp,
                image,
                compression="zlib",
                photometric="rgb" if rgb else "minisblack",
                metadata=None,
                **tiff_resolution(pixel_size_um),
            )
        else:
            import skimage.io

            skimage.io.imsave(tmp, image, check_contrast=False)
    return path
