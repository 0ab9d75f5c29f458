"""`csrefiner demo run --quick` end to end: the fine-tuned model beats its baseline on held-out hard patches, every
artefact exists and opens, and the HTML report shows exactly the numbers of summary.json.

One reduced run (through the real CLI, tests/demo_run.py) serves every test here and the pipeline flow test of
-profile test (tests/test_pipeline_flow.py); ~3-4 min on an idle 2-core CPU.
"""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

import numpy as np
import pytest

pytest.importorskip("cellpose")

# Measured F1 gains of the quick demo with Cellpose (seed 0, 6 held-out hard patches, 2 CPU cores): +0.397
# (0.358 -> 0.756) when this bound was set, +0.467 (0.161 -> 0.628, baseline trained from scratch) with the
# current presets (docs/benchmarks.md). The margin is well below the smallest gain measured, and well above
# run-to-run noise of a seeded CPU run.
MIN_GAIN = 0.10


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The session's one `demo run --quick` (tests/demo_run.py), also checked task by task by the flow test."""
    from demo_run import demo_run

    run = demo_run(tmp_path_factory)
    return run.out, run.summary, run.stdout


class Page(HTMLParser):
    """Number cells (`data-k` -> text), embedded images, and whether tags balance."""

    def __init__(self):
        super().__init__()
        self.values: dict[str, str] = {}
        self.images: list[str] = []
        self._key: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        if "data-k" in a:
            self._key, self._text = a["data-k"], ""

    def handle_data(self, data):
        if self._key is not None:
            self._text += data

    def handle_endtag(self, tag):
        if self._key is not None and tag in ("td", "span"):
            self.values[self._key] = self._text.strip()
            self._key = None


def lookup(summary: dict, key: str):
    node = summary
    for part in key.split("/"):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def shown_as(value, text: str) -> bool:
    if value is None:
        return text == "-"
    if isinstance(value, int) and not isinstance(value, bool) and text == str(value):
        return True
    return any(format(value, f) == text for f in (".3f", "+.3f", ".1f", ".3g"))


def test_fine_tuning_beats_baseline_on_hard_patches(demo):
    _, summary, stdout = demo
    g = summary["gain"]["cellpose"]
    assert g["n_images"] >= 6
    assert g["f1_after"] - g["f1_before"] == pytest.approx(g["f1_gain"])
    assert g["f1_gain"] > MIN_GAIN, g
    assert g["micro_f1_after"] > g["micro_f1_before"]
    # the gain comes with the paired test evaluate computed on the same patches
    assert summary["comparisons"]["hard"]["cellpose"]["f1"]["mean_diff"] == pytest.approx(g["f1_gain"])
    assert f"{g['f1_before']:.3f} -> {g['f1_after']:.3f}" in stdout
    # suggest sent the annotator to the hard block, where the models disagree
    assert summary["suggest"]["in_hard_region"] >= summary["suggest"]["selected"] - 1


def test_unavailable_backend_is_skipped_with_a_note(demo):
    out, summary, stdout = demo
    assert list(summary["gain"]) == ["cellpose"]
    assert "no_such_backend" in summary["skipped_models"]
    assert "no_such_backend" in stdout and "no_such_backend" in (out / "report.html").read_text()


def test_every_artefact_exists_and_opens(demo):
    import anndata
    import h5py
    import tifffile
    from PIL import Image

    out, summary, _ = demo
    for rel in (
        "report.html",
        "summary.json",
        "evaluation/heldout_hard/paired_tests.csv",
        "data/demo.json",
        "models/cellpose-baseline/model.json",
        "models/cellpose-finetuned/model.json",
        "models/cellpose-finetuned/train_log.json",
        "suggest/ranking.csv",
        "data/slide.gem.gz",
        "annotated/annotate.json",
        "wsi/slide-stitch.json",
        "wsi/slide-preview.png",
    ):
        assert (out / rel).is_file(), rel
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(pngs) >= 8  # overlays, slide, labels, 2 loss curves, box plots
    for png in pngs:
        with Image.open(png) as im:
            im.verify()
    with tifffile.TiffFile(out / "wsi" / "slide-mask.tif") as tif:
        mask = tif.series[0].asarray()
    assert mask.dtype == np.uint32 and mask.shape == tuple(summary["data"]["slide_shape"][:2])
    assert int(mask.max()) == summary["slide"]["objects"] > 0
    with h5py.File(out / "stereo" / "slide.cellbin.gef", "r") as gef:
        assert "cellBin" in gef
        assert gef["cellBin"]["cell"].shape[0] == summary["stereo"]["cells"]
    adata = anndata.read_h5ad(out / "stereo" / "slide.h5ad")
    assert adata.n_obs == summary["stereo"]["cells"] and adata.n_vars == summary["stereo"]["genes"]
    # the stitched whole-slide result is as good on the held-out rows as patch-wise evaluation says
    assert summary["slide"]["f1_by_region"]["hard block, held-out rows"] > summary["gain"]["cellpose"]["f1_before"]


def test_report_is_self_contained_and_matches_the_json(demo):
    from PIL import Image

    out, summary, _ = demo
    text = (out / "report.html").read_text()
    page = Page()
    page.feed(text)
    page.close()
    assert len(page.images) >= 8 and all(src.startswith("data:image/png;base64,") for src in page.images)
    for src in page.images:
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            im.verify()
    assert 'src="http' not in text and 'href="http' not in text
    # every number on the page is the JSON's value, formatted
    assert len(page.values) > 60
    wrong = {k: (v, lookup(summary, k)) for k, v in page.values.items() if not shown_as(lookup(summary, k), v)}
    assert not wrong
    for key in (
        "gain/cellpose/f1_before",
        "gain/cellpose/f1_after",
        "gain/cellpose/f1_gain",
        "hard/methods/cellpose-finetuned/macro/recall",
        "comparisons/hard/cellpose/f1/p_value",
    ):
        assert key in page.values


def test_report_is_rebuilt_from_the_run_folder_alone(demo, tmp_path):
    """`demo report` reads only files (as the pipeline's DEMO_REPORT does): a copy of the run without the
    report, its figures and run.json gives the same numbers."""
    import shutil

    from conftest import run_cli

    out, summary, _ = demo
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, symlinks=True)
    for rel in ("report.html", "summary.json", "run.json"):
        (copy / rel).unlink()
    shutil.rmtree(copy / "figures")
    run_cli("demo", "report", "--run", copy)
    again = json.loads((copy / "summary.json").read_text())
    for key in ("gain", "hard", "comparisons", "suggest", "slide", "stereo", "data", "config", "options"):
        assert again[key] == summary[key], key
    assert again["runner"].startswith("nextflow") and again["timings"] == []
    assert "pipeline_info" in (copy / "report.html").read_text()


def test_every_step_ran_with_demo_json_options(demo):
    """The options the pipeline reads from data/demo.json are the ones the run used (model cards, tiles)."""
    out, summary, _ = demo
    spec = json.loads((out / "data" / "demo.json").read_text())
    cfg = spec["config"]
    assert spec["options"] == summary["options"]
    for stage, epochs in (("baseline", cfg["baseline_epochs"]), ("finetuned", cfg["epochs"])):
        hyper = json.loads((out / "models" / f"cellpose-{stage}" / "model.json").read_text())["hyperparameters"]
        assert (hyper["epochs"], hyper["batch_size"]) == (epochs, cfg["batch_size"]), stage
    stitch = json.loads((out / "wsi" / "slide-stitch.json").read_text())
    n = -(-cfg["slide_shape"][0] // cfg["tile"])  # tiles per side (square slide, overlap inside the tile)
    assert stitch["tiles"] == n * n == summary["slide"]["tiles"]
    annotated = json.loads((out / "annotated" / "annotate.json").read_text())
    assert annotated["selected"] == cfg["patches"] == len(list((out / "annotated").glob("*-mask.tif")))


def test_demo_data_is_reproducible_and_annotate_checks_its_input(tmp_path):
    from conftest import run_cli

    a, b = tmp_path / "a", tmp_path / "b"
    run_cli("demo", "data", "--quick", "--out", a, "--seed", "3")
    run_cli("demo", "data", "--quick", "--out", b, "--seed", "3")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    again = run_cli("demo", "data", "--quick", "--out", a, check=False)
    assert again.returncode != 0 and "--force" in again.stderr
    bad = run_cli(
        "demo", "annotate", "--suggested", tmp_path / "nope", "--data", a, "--out", tmp_path / "ann", check=False
    )
    assert bad.returncode != 0 and "summary.json" in bad.stderr and not (tmp_path / "ann").exists()


def test_baseline_is_a_cached_pretrained_model_when_there_is_one(tmp_path, monkeypatch):
    """--pretrained unset: the backend's default model if the local cache has it (nothing downloaded)."""
    from csrefiner.demo.backends import cached_default, pretrained_for

    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path))
    assert cached_default("cellpose") is None  # empty cache: the demo trains its baseline
    (tmp_path / "cyto3").write_bytes(b"")  # where cellpose itself would have put it
    assert cached_default("cellpose") == "cyto3"
    assert pretrained_for(None, "cellpose") is None
    assert pretrained_for("cellpose:cyto3,stardist:scratch", "stardist") == "scratch"
    assert pretrained_for("nuclei", "cellpose") == "nuclei"


def test_step_options_become_the_library_calls_arguments(tmp_path):
    """`demo run` passes demo.json's options to the library calls as typed keyword arguments; an option a call
    does not take fails there, not silently."""
    from csrefiner.demo.calls import parse, tile
    from csrefiner.errors import CsrefinerError

    text = "--tile-size 256 --overlap 0 --name demo --iou 0.5 --option a=1 --option b=2,3"
    assert parse(text) == {"tile_size": 256, "overlap": 0, "name": "demo", "iou": 0.5, "option": ["a=1", "b=2,3"]}
    for bad in ("--seed", "--seed 1 --seed 2", "seed 1"):
        with pytest.raises(CsrefinerError):
            parse(bad)
    with pytest.raises(TypeError, match="no_such_option"):
        tile(tmp_path / "slide.tif", tmp_path / "tiles", "--tile-size 256 --no-such-option 1")


def demo_imports() -> dict[str, set[str]]:
    """csrefiner/demo module -> the csrefiner/demo modules it imports (at any level, lazy imports included)."""
    import ast
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "csrefiner" / "demo"
    names = {p.stem for p in folder.glob("*.py")}
    graph = {}
    for name in names:
        deps = set()
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "csrefiner.demo":
                deps |= {a.name if a.name in names else "__init__" for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("csrefiner.demo."):
                deps.add(node.module.split(".")[2])
        graph[name] = deps - {name}
    return graph


def test_demo_modules_import_no_cycle():
    graph = demo_imports()
    assert "summary" in graph["flow"] and "flow" not in graph["summary"]  # the check sees lazy imports too

    def reaches(start: str, goal: str, seen: set) -> bool:
        return any(d == goal or (d not in seen and reaches(d, goal, seen | {d})) for d in graph.get(start, ()))

    assert not [m for m in graph if reaches(m, m, {m})]
