"""The fault catalogue, input side: every command fed what a hostile or unlucky user feeds it.

Classes: missing input, empty input, damaged input (truncated TIFF of each layout, truncated gzip GEM, corrupt
GEF, broken JSON in a model folder / manifest / demo folder), wrong type, bad options, unknown --option keys,
name escapes, resource traps and silent wrong results. Each case must fail cleanly (harness.check): exit 2,
one `error:` line naming the path or option, no traceback, inputs byte-identical, nothing left behind.

Shared inputs are built once per module and copied into each case's own folder; one subprocess per case.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from .harness import Fault, check

A = Path()  # the module's shared inputs (set by the `assets` fixture)
SIDE = 768  # slide side: one tile of 256 px is 9 tiles, one pixel tiles would be 589,824
SEG = ["--model", "watershed:default"]


def build_assets(root: Path) -> None:
    from csrefiner.io import patch_name, write_image, write_labels
    from csrefiner.synth import EASY, nuclei_image

    img, lab = nuclei_image((SIDE, SIDE), EASY, 0)
    tifffile.imwrite(root / "slide.tif", img, tile=(256, 256), compression="zlib")
    tifffile.imwrite(root / "striped.tif", img, rowsperstrip=64, compression="zlib")
    tifffile.imwrite(root / "raw.tif", img)
    write_labels(root / "slide-mask.tif", lab)
    for layout, name in (("tiled", "slide.tif"), ("striped", "striped.tif"), ("raw", "raw.tif")):
        data = (root / name).read_bytes()
        (root / f"cut-{layout}.tif").write_bytes(data[: len(data) * 6 // 10])
    # a deflate tile damaged in the middle (the file is complete, its compressed data is not)
    with tifffile.TiffFile(root / "slide.tif") as tif:
        page = tif.pages[0]
        start, length = page.dataoffsets[4], page.databytecounts[4]
    data = bytearray((root / "slide.tif").read_bytes())
    data[start + 8 : start + length - 8] = bytes(length - 16)
    (root / "bad-deflate.tif").write_bytes(bytes(data))

    patches = root / "patches"
    patches.mkdir()
    for i in range(3):
        pimg, plab = nuclei_image((128, 128), EASY, 10 + i)
        key = patch_name("p", 0, i * 128, 128, 128)
        write_image(patches / f"{key}-img.tif", pimg)
        write_labels(patches / f"{key}-mask.tif", plab)
    tifffile.imwrite(root / "binary-mask.tif", (plab > 0).astype(np.uint8))
    tifffile.imwrite(root / "float-mask.tif", plab.astype(np.float32))
    tifffile.imwrite(root / "bool-mask.tif", plab > 0)
    write_image(root / "rgb.png", np.dstack([pimg] * 3).astype(np.uint8))

    rows = "".join(f"G{i % 7}\t{(i * 37) % SIDE}\t{(i * 91) % SIDE}\t{1 + i % 3}\n" for i in range(2000))
    (root / "chip.gem").write_text("geneID\tx\ty\tMIDCount\n" + rows)
    packed = gzip.compress((root / "chip.gem").read_bytes())
    (root / "cut.gem.gz").write_bytes(packed[: len(packed) // 2])


@pytest.fixture(scope="module", autouse=True)
def assets(tmp_path_factory):
    global A
    A = tmp_path_factory.mktemp("assets")
    build_assets(A)
    return A


def cp(root: Path, *names: str) -> None:
    for name in names:
        src = A / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / Path(name).name)


def write(root: Path, name: str, data: bytes | str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def case(id: str, files: tuple[str, ...], argv: list[str], *names: str, extra=None) -> Fault:
    """A catalogue row: shared `files`, optional `extra(root)` that writes case-specific inputs, the command."""

    def build(root: Path) -> list[str]:
        cp(root, *files)
        if extra is not None:
            extra(root)
        return list(argv)

    return Fault(id, build, names)


def gem(text: str):
    return lambda root: write(root, "bad.gem", text)


def bgef(counts):
    """A bin1 GEF with a signed count field holding `counts` (one gene)."""

    def make(root: Path) -> None:
        import h5py

        n = len(counts)
        expr = np.zeros(n, [("x", "<i4"), ("y", "<i4"), ("count", "<i4")])
        expr["x"], expr["y"], expr["count"] = np.arange(n) * 5, np.arange(n) * 3, counts
        genes = np.zeros(1, [("geneID", "S8"), ("geneName", "S8"), ("offset", "<u8"), ("count", "<u8")])
        genes[0] = (b"G1", b"G1", 0, n)
        with h5py.File(root / "chip.gef", "w") as f:
            f.create_dataset("geneExp/bin1/expression", data=expr)
            f.create_dataset("geneExp/bin1/gene", data=genes)

    return make


def model_folder(card: str, config: str | None):
    """A cellpose model folder written by hand: its card and (maybe broken) cellpose/config.json."""

    def make(root: Path) -> None:
        write(root, "model/model.json", card)
        if config is not None:
            write(root, "model/cellpose/config.json", config)

    return make


def demo_folders(slide_seed: int = 0, top=("demo-x0_y0_w64_h64",), spec: str | None = None):
    """A `demo data` folder (spec, slide, ground truth) and a `suggest` folder whose patches come from a slide
    generated with `slide_seed` (0: the demo's own slide)."""

    def make(root: Path) -> None:
        from csrefiner.synth import EASY, nuclei_image

        img, lab = nuclei_image((128, 128), EASY, 0)
        other = img if slide_seed == 0 else nuclei_image((128, 128), EASY, slide_seed)[0]
        write(root, "data/demo.json", spec if spec is not None else json.dumps({"config": {"hard_x0": 64}}))
        tifffile.imwrite(root / "data/slide.tif", img)
        tifffile.imwrite(root / "data/slide-gt-mask.tif", lab.astype(np.uint32))
        write(root, "sug/summary.json", json.dumps({"top": list(top)}))
        (root / "sug/patches").mkdir()
        for name in top:
            if "/" not in name:
                tifffile.imwrite(root / "sug/patches" / f"{name}-img.tif", other[:64, :64])

    return make


def manifest(root: Path, **edits) -> None:
    """The manifest of the shared slide in 256 px tiles, with `edits` written over its fields."""
    from csrefiner.wsi.manifest import Manifest

    Manifest("slide", "slide.tif", (SIDE, SIDE), "uint8", 1, 256, 0).save(root / "m.json")
    data = json.loads((root / "m.json").read_text())
    (root / "m.json").write_text(json.dumps({**data, **edits}))


def annotate_argv() -> list[str]:
    return ["demo", "annotate", "--suggested", "sug", "--data", "data", "--out", "ann"]


FT = ["finetune", "--model", "cellpose", "--pretrained", "scratch", "--train", "patches", "--out", "m"]
SUG = ["--pred", "patches", "--pred", "p2"]
EV = ["evaluate", "--gt", "patches", "--pred", "patches", "--out", "ev"]

CASES = [
    # ---- missing input
    case("tile/missing", (), ["tile", "--image", "nope.tif", "--out", "t"], "nope.tif"),
    case("crop/missing", (), ["crop", "--image", "nope.tif", "--out", "c"], "nope.tif"),
    case("segment/missing", (), ["segment", "--input", "nope.tif", "--out", "s", *SEG], "nope.tif"),
    case("finetune/missing", (), [*FT[:5], "--train", "nope", "--out", "m"], "nope"),
    case(
        "stitch/missing",
        ("patches",),
        ["stitch", "--manifest", "nope.json", "--tiles", "patches", "--out", "o.tif"],
        "nope.json",
    ),
    case("evaluate/missing", ("patches",), ["evaluate", "--gt", "patches", "--pred", "nope", "--out", "ev"], "nope"),
    case(
        "consensus/missing", ("patches",), ["consensus", "--pred", "patches", "--pred", "nope", "--out", "co"], "nope"
    ),
    case(
        "suggest/missing",
        ("patches",),
        ["suggest", *SUG, "--image-dir", "nope", "--out", "su"],
        "nope",
        extra=lambda r: shutil.copytree(A / "patches", r / "p2"),
    ),
    case(
        "to-masks/missing",
        ("slide.tif",),
        ["annotations", "to-masks", "--geojson", "nope.geojson", "--image", "slide.tif", "--out", "tm"],
        "nope.geojson",
    ),
    case(
        "to-geojson/missing", (), ["annotations", "to-geojson", "--mask", "nope.tif", "--out", "o.geojson"], "nope.tif"
    ),
    case(
        "cgef/missing",
        ("slide-mask.tif",),
        ["cgef", "--matrix", "nope.gem", "--mask", "slide-mask.tif", "--out", "o.gef"],
        "nope.gem",
    ),
    case("demo-annotate/missing", (), annotate_argv(), "data"),
    case("demo-report/missing", (), ["demo", "report", "--run", "nope"], "nope"),
    # ---- empty input
    case(
        "tile/empty-file",
        (),
        ["tile", "--image", "e.tif", "--out", "t"],
        "e.tif",
        extra=lambda r: write(r, "e.tif", b""),
    ),
    case(
        "segment/empty-folder",
        (),
        ["segment", "--input", "in", "--out", "s", *SEG],
        "in",
        extra=lambda r: (r / "in").mkdir(),
    ),
    case(
        "finetune/empty-folder", (), [*FT[:5], "--train", "in", "--out", "m"], "in", extra=lambda r: (r / "in").mkdir()
    ),
    case(
        "evaluate/empty-folder",
        ("patches",),
        ["evaluate", "--gt", "patches", "--pred", "in", "--out", "ev"],
        "in",
        extra=lambda r: (r / "in").mkdir(),
    ),
    case(
        "cgef/empty-gem",
        ("slide-mask.tif",),
        ["cgef", "--matrix", "bad.gem", "--mask", "slide-mask.tif", "--out", "o.gef"],
        "bad.gem",
        extra=gem(""),
    ),
    case(
        "stitch/empty-manifest",
        ("patches",),
        ["stitch", "--manifest", "m.json", "--tiles", "patches", "--out", "o.tif"],
        "m.json",
        extra=lambda r: write(r, "m.json", ""),
    ),
    case(
        "to-masks/empty-geojson",
        ("slide.tif",),
        ["annotations", "to-masks", "--geojson", "e.geojson", "--image", "slide.tif", "--out", "tm"],
        "e.geojson",
        extra=lambda r: write(r, "e.geojson", ""),
    ),
    # ---- damaged: truncated TIFF of each layout, a damaged deflate tile, in every command that reads slides
    *[
        case(
            f"{cmd}/truncated-{layout}",
            (f"cut-{layout}.tif",),
            [*argv[:2], f"cut-{layout}.tif", *argv[2:]],
            f"cut-{layout}.tif",
        )
        for layout in ("tiled", "striped", "raw")
        for cmd, argv in (
            ("tile", ["tile", "--image", "--out", "t", "--tile-size", "256", "--overlap", "32"]),
            ("crop", ["crop", "--image", "--out", "c"]),
            ("segment-tiled", ["segment", "--input", "--out", "s", *SEG, "--tile-size", "256", "--overlap", "32"]),
        )
    ],
    case(
        "tile/damaged-deflate",
        ("bad-deflate.tif",),
        ["tile", "--image", "bad-deflate.tif", "--out", "t", "--tile-size", "256", "--overlap", "0"],
        "bad-deflate.tif",
    ),
    case(
        "crop/damaged-deflate",
        ("bad-deflate.tif",),
        ["crop", "--image", "bad-deflate.tif", "--out", "c"],
        "bad-deflate.tif",
    ),
    case(
        "segment/damaged-deflate",
        ("bad-deflate.tif",),
        ["segment", "--input", "bad-deflate.tif", "--out", "s", *SEG],
        "bad-deflate.tif",
    ),
    case(
        "cgef/truncated-gzip",
        ("cut.gem.gz", "slide-mask.tif"),
        ["cgef", "--matrix", "cut.gem.gz", "--mask", "slide-mask.tif", "--out", "o.gef"],
        "cut.gem.gz",
    ),
    case(
        "cgef/gem-count-overflow",
        ("slide-mask.tif",),
        ["cgef", "--matrix", "bad.gem", "--mask", "slide-mask.tif", "--out", "o.gef"],
        "bad.gem",
        extra=gem("geneID\tx\ty\tMIDCount\nA\t1\t1\t1\nB\t2\t2\t100000000000000000000\n"),
    ),
    case(
        "cgef/gem-not-utf8",
        ("slide-mask.tif",),
        ["cgef", "--matrix", "bad.gem", "--mask", "slide-mask.tif", "--out", "o.gef"],
        "bad.gem",
        extra=lambda r: write(r, "bad.gem", b"geneID\tx\ty\tMIDCount\nA\t1\t1\t1\n\xff\xfeB\t2\t2\t3\n"),
    ),
    case(
        "cgef/corrupt-gef",
        ("slide-mask.tif",),
        ["cgef", "--matrix", "chip.gef", "--mask", "slide-mask.tif", "--out", "o.gef"],
        "chip.gef",
        extra=lambda r: (bgef([1, 2, 3])(r), write(r, "chip.gef", (r / "chip.gef").read_bytes()[:1500])),
    ),
    case(
        "segment/model-config-broken",
        ("patches",),
        ["segment", "--model-dir", "model", "--input", "patches", "--out", "s", "--device", "cpu"],
        "model/cellpose/config.json",
        extra=model_folder('{"backend": "cellpose"}', '{"nbase": [2, 8,'),
    ),
    case(
        "segment/model-card-broken",
        ("patches",),
        ["segment", "--model-dir", "model", "--input", "patches", "--out", "s"],
        "model/model.json",
        extra=model_folder("{", None),
    ),
    case(
        "stitch/manifest-broken-json",
        ("patches",),
        ["stitch", "--manifest", "m.json", "--tiles", "patches", "--out", "o.tif"],
        "m.json",
        extra=lambda r: write(r, "m.json", '{"format": '),
    ),
    case(
        "demo-annotate/no-demo-json",
        (),
        annotate_argv(),
        "data/demo.json",
        extra=lambda r: (demo_folders()(r), (r / "data/demo.json").unlink()),
    ),
    case(
        "demo-annotate/demo-json-without-config",
        (),
        annotate_argv(),
        "data/demo.json",
        extra=demo_folders(spec='{"data": {}}'),
    ),
    case(
        "demo-annotate/summary-without-top",
        (),
        annotate_argv(),
        "sug/summary.json",
        extra=lambda r: (demo_folders()(r), write(r, "sug/summary.json", '{"models": {}}')),
    ),
    # ---- wrong type
    case("tile/folder-for-slide", ("patches",), ["tile", "--image", "patches", "--out", "t"], "patches"),
    case(
        "evaluate/file-for-folder",
        ("slide.tif", "patches"),
        ["evaluate", "--gt", "slide.tif", "--pred", "patches", "--out", "ev"],
        "slide.tif",
    ),
    case("finetune/file-for-folder", ("slide.tif",), [*FT[:5], "--train", "slide.tif", "--out", "m"], "slide.tif"),
    case(
        "cgef/png-for-mask",
        ("chip.gem", "rgb.png"),
        ["cgef", "--matrix", "chip.gem", "--mask", "rgb.png", "--out", "o.gef"],
        "rgb.png",
    ),
    case(
        "cgef/float-mask",
        ("chip.gem", "float-mask.tif"),
        ["cgef", "--matrix", "chip.gem", "--mask", "float-mask.tif", "--out", "o.gef"],
        "float-mask.tif",
    ),
    case(
        "cgef/tiff-for-matrix",
        ("slide-mask.tif",),
        ["cgef", "--matrix", "slide-mask.tif", "--mask", "slide-mask.tif", "--out", "o.gef"],
        "slide-mask.tif",
    ),
    case(
        "to-geojson/bool-mask",
        ("bool-mask.tif",),
        ["annotations", "to-geojson", "--mask", "bool-mask.tif", "--out", "o.geojson"],
        "bool-mask.tif",
    ),
    case(
        "to-geojson/float-mask",
        ("float-mask.tif",),
        ["annotations", "to-geojson", "--mask", "float-mask.tif", "--out", "o.geojson"],
        "float-mask.tif",
    ),
    case(
        "crop/float-mask",
        ("slide.tif", "float-mask.tif"),
        ["crop", "--image", "slide.tif", "--mask", "float-mask.tif", "--out", "c"],
        "float-mask.tif",
    ),
    # ---- bad options (parse time, the allowed range named)
    case("finetune/lr-negative", ("patches",), [*FT, "--lr", "-1"], "--lr"),
    case("finetune/lr-zero", ("patches",), [*FT, "--lr", "0"], "--lr"),
    case("finetune/epochs-zero", ("patches",), [*FT, "--epochs", "0"], "--epochs"),
    case("finetune/batch-size-zero", ("patches",), [*FT, "--batch-size", "0"], "--batch-size"),
    case("finetune/gamma-above-1", ("patches",), [*FT, "--gamma", "2"], "--gamma"),
    case("finetune/val-fraction-1", ("patches",), [*FT, "--val-fraction", "1"], "--val-fraction"),
    case("finetune/device-tpu", ("patches",), [*FT, "--device", "tpu"], "--device"),
    case(
        "segment/stain-xx",
        ("patches",),
        ["segment", "--input", "patches", "--out", "s", *SEG, "--stain", "xx"],
        "--stain",
    ),
    case(
        "segment/device-tpu",
        ("patches",),
        ["segment", "--input", "patches", "--out", "s", *SEG, "--device", "tpu"],
        "--device",
    ),
    case("evaluate/iou-zero", ("patches",), [*EV, "--iou", "0"], "--iou"),
    case("evaluate/iou-above-1", ("patches",), [*EV, "--iou", "1.5"], "--iou"),
    case(
        "suggest/top-zero",
        ("patches",),
        ["suggest", *SUG, "--image-dir", "patches", "--out", "su", "--top", "0"],
        "--top",
        extra=lambda r: shutil.copytree(A / "patches", r / "p2"),
    ),
    case(
        "cgef/block-size-zero",
        ("chip.gem", "slide-mask.tif"),
        ["cgef", "--matrix", "chip.gem", "--mask", "slide-mask.tif", "--out", "o.gef", "--block-size", "0"],
        "--block-size",
    ),
    case(
        "cgef/block-size-absurd",
        ("chip.gem", "slide-mask.tif"),
        ["cgef", "--matrix", "chip.gem", "--mask", "slide-mask.tif", "--out", "o.gef", "--block-size", "99999999999"],
        "--block-size",
    ),
    case(
        "tile/tile-size-small",
        ("slide.tif",),
        ["tile", "--image", "slide.tif", "--out", "t", "--tile-size", "8"],
        "--tile-size",
    ),
    case(
        "tile/overlap-negative",
        ("slide.tif",),
        ["tile", "--image", "slide.tif", "--out", "t", "--overlap", "-1"],
        "--overlap",
    ),
    case(
        "stitch/min-iou-zero",
        ("patches",),
        ["stitch", "--manifest", "m.json", "--tiles", "patches", "--out", "o.tif", "--min-iou", "0"],
        "--min-iou",
    ),
    case("synth/seed-negative", (), ["synth", "--out", "sy", "--seed", "-1"], "--seed"),
    case(
        "crop/stride-above-size",
        ("slide.tif",),
        ["crop", "--image", "slide.tif", "--out", "c", "--size", "256", "--stride", "300"],
        "--stride",
    ),
    case(
        "to-geojson/object-type",
        ("slide-mask.tif",),
        ["annotations", "to-geojson", "--mask", "slide-mask.tif", "--out", "o.geojson", "--object-type", "blob"],
        "--object-type",
    ),
    case(
        "export/object-type",
        ("slide-mask.tif",),
        ["export", "--mask", "slide-mask.tif", "--geojson", "o.geojson", "--object-type", "blob"],
        "--object-type",
    ),
    case(
        "export/origin-not-a-pair",
        ("slide-mask.tif",),
        ["export", "--mask", "slide-mask.tif", "--geojson", "o.geojson", "--origin", "5000"],
        "--origin",
        "5000",
    ),
    case("export/missing-mask", (), ["export", "--mask", "nope.tif", "--geojson", "o.geojson"], "nope.tif"),
    case("export/nothing-to-write", ("slide-mask.tif",), ["export", "--mask", "slide-mask.tif"], "--geojson"),
    case(
        "round/from-choice",
        ("patches",),
        ["round", "train", "--project", "pr", "--model", "cellpose", "--from", "nowhere"],
        "--from",
    ),
    case("round/status-no-project", (), ["round", "status", "--project", "nope"], "nope"),
    # ---- unknown backend --option keys
    case(
        "segment/unknown-option",
        ("patches",),
        ["segment", "--input", "patches", "--out", "s", *SEG, "--option", "foo=1"],
        "--option foo",
        "min_distance",
    ),
    case("finetune/unknown-option", ("patches",), [*FT, "--option", "nbsae=2,8,256"], "--option nbsae", "nbase"),
    # ---- names that would escape the output folder
    case(
        "tile/name-escape",
        ("slide.tif",),
        ["tile", "--image", "slide.tif", "--out", "t", "--name", "../../ESC"],
        "--name",
        "../../ESC",
    ),
    case(
        "crop/name-separator", ("slide.tif",), ["crop", "--image", "slide.tif", "--out", "c", "--name", "a/b"], "--name"
    ),
    case("synth/name-dotdot", (), ["synth", "--out", "sy", "--name", ".."], "--name"),
    case(
        "tile/hidden-slide-name",
        (),
        ["tile", "--image", ".slide.tif", "--out", "t"],
        ".slide.tif",
        extra=lambda r: shutil.copy(A / "slide.tif", r / ".slide.tif"),
    ),
    case(
        "demo-annotate/name-escape",
        (),
        annotate_argv(),
        "../x-x0_y0_w64_h64",
        extra=demo_folders(top=("../x-x0_y0_w64_h64",)),
    ),
    case(
        "stitch/manifest-slide-escape",
        ("patches",),
        ["stitch", "--manifest", "m.json", "--tiles", "patches", "--out", "o.tif"],
        "m.json",
        "../x",
        extra=lambda r: manifest(r, slide="../x"),
    ),
    # ---- resource traps, refused before any work
    case(
        "stitch/manifest-absurd-shape",
        ("patches",),
        ["stitch", "--manifest", "m.json", "--tiles", "patches", "--out", "o.tif"],
        "m.json",
        "tiles",
        extra=lambda r: manifest(r, shape=[10**7, 10**7]),
    ),
    case(
        "segment/tile-size-1",
        ("slide.tif",),
        ["segment", "--input", "slide.tif", "--out", "s", *SEG, "--tile-size", "1", "--overlap", "0"],
        "589,824",
    ),
    case(
        "crop/size-above-slide",
        ("slide.tif",),
        ["crop", "--image", "slide.tif", "--out", "c", "--size", "100000"],
        "--size",
        "768",
    ),
    case("crop/size-1", ("slide.tif",), ["crop", "--image", "slide.tif", "--out", "c", "--size", "1"], "589,824"),
    case(
        "tile/overlap-equals-tile",
        ("slide.tif",),
        ["tile", "--image", "slide.tif", "--out", "t", "--tile-size", "256", "--overlap", "256"],
        "--overlap",
    ),
    case(
        "demo-data/overlap-above-tile",
        (),
        ["demo", "data", "--out", "dd", "--tile-size", "64", "--overlap", "1000"],
        "--overlap",
    ),
    # ---- silent wrong results, now refused
    case(
        "cgef/gem-negative-count",
        ("slide-mask.tif",),
        ["cgef", "--matrix", "bad.gem", "--mask", "slide-mask.tif", "--out", "o.gef"],
        "bad.gem",
        "negative",
        extra=gem("geneID\tx\ty\tMIDCount\nA\t1\t1\t4\nA\t2\t2\t-3\n"),
    ),
    case(
        "cgef/gef-negative-count",
        ("slide-mask.tif",),
        ["cgef", "--matrix", "chip.gef", "--mask", "slide-mask.tif", "--out", "o.gef"],
        "chip.gef",
        "negative",
        extra=bgef([4, -3, 2]),
    ),
    case(
        "demo-annotate/another-slide",
        (),
        annotate_argv(),
        "sug/patches/demo-x0_y0_w64_h64-img.tif",
        "another slide",
        extra=demo_folders(slide_seed=7),
    ),
    case(
        "to-geojson/binary-mask",
        ("binary-mask.tif",),
        ["annotations", "to-geojson", "--mask", "binary-mask.tif", "--out", "o.geojson"],
        "binary-mask.tif",
        "separate objects",
    ),
]


@pytest.mark.parametrize("fault", CASES, ids=str)
def test_input_fault_fails_cleanly(fault, tmp_path):
    check(fault, tmp_path)


def test_catalogue_ids_are_unique():
    ids = [f.id for f in CASES]
    assert len(ids) == len(set(ids))


def test_plan_bound_counts_the_tiles_the_grid_would_make():
    from csrefiner.wsi.tiling import axis_count, axis_starts, plan_tiles

    for length, size, overlap in ((1, 64, 0), (64, 64, 0), (65, 64, 8), (768, 256, 32), (1000, 384, 48)):
        assert axis_count(length, size, overlap) == len(axis_starts(length, size, overlap))
    assert len(plan_tiles((1000, 1300), 384, 48)) == axis_count(1000, 384, 48) * axis_count(1300, 384, 48)


def test_option_keys_accept_what_the_project_itself_passes():
    """The demo's backend options and the documented examples (docs/backends.md) must stay valid under the
    unknown-key check."""
    from csrefiner.demo.config import BACKEND_OPTIONS
    from csrefiner.models import get_backend

    for name, (arch, train) in BACKEND_OPTIONS.items():
        get_backend(name).check_options({**arch, **train})
    with pytest.raises(Exception, match="its options are min_distance, sigma"):
        get_backend("watershed").check_options({"min_distanse": "3"})


def test_safe_name_keeps_ordinary_names():
    from csrefiner.io import patch_name, safe_name

    for name in ("chipA", "SS200000135TL_D1", "slide.v2", patch_name("demo", 0, 128, 64, 64)):
        assert safe_name(name, "--name") == name
