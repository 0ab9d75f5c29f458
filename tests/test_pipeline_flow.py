"""The test profiles' flows without Nextflow: the modules' own script blocks, rendered with the profile's params
and ext.args, run with bash in task folders, in the workflow's order; every declared output must appear.

-profile test_models is the samplesheet workflow (workflows/csrefiner.nf and subworkflows/local/), run as a chain
on generated data; the wiring mirrored here: train/val split, tile batches, regrouping per slide, consensus
inputs. -profile test is the demo (workflows/demo.nf): its steps are checked against csrefiner/demo/steps.py, and
each task runs on the files of the session's one `csrefiner demo run --quick` (tests/demo_run.py), with the
options of its data/demo.json, and must give that run's outputs, so the demo runs end to end once.

Steps whose `csrefiner` command is not in the app yet are skipped with a warning naming them, together with
everything downstream; CSREFINER_FLOW_STRICT=1 (or STRICT below) turns a skip into a failure.
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import typer.main
from nf_modules import (
    REPO,
    aliases,
    ext_args,
    ext_prefixes,
    load_modules,
    pipeline_params,
    render,
    run_task,
    stage,
    task_context,
)

from csrefiner.cli import app
from csrefiner.io import read_image, read_labels

STRICT = os.environ.get("CSREFINER_FLOW_STRICT", "0") == "1"
MODULES = load_modules()
EXT = ext_args()
PREFIX = ext_prefixes()
APP_STEPS = set(typer.main.get_command(app).commands)
ENV = {
    "PATH": os.pathsep.join([os.path.dirname(sys.executable), str(REPO / "bin"), os.environ.get("PATH", "")]),
    "PYTHONPATH": str(REPO),
    "CSREFINER_QUIET": "1",
    "MPLBACKEND": "Agg",
    "PYTHONNOUSERSITE": "1",
}


def parse_models(spec: str) -> list[dict]:
    """utils_csrefiner parseModels, for the test profile's backend:pretrained list."""
    out = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        backend, _, pretrained = item.partition(":")
        out.append({"id": backend, "backend": backend, "pretrained": pretrained, "model_name": pretrained})
    return out


def split_patches(folder: Path, every: int) -> tuple[list[Path], list[Path]]:
    """utils_csrefiner patchPairs + splitPatches: every n-th pair by name is held out, at least one."""
    keys = sorted(p.name[: -len("-img.tif")] for p in folder.glob("*-img.tif"))
    is_val = [every > 0 and i % every == every - 1 for i in range(len(keys))]
    if not any(is_val):
        is_val[-1] = True
    train, val = [], []
    for key, v in zip(keys, is_val):
        (val if v else train).extend([folder / f"{key}-img.tif", folder / f"{key}-mask.tif"])
    return train, val


class Flow:
    def __init__(self, work: Path, params: dict):
        self.work, self.params = work, params
        self.skipped: list[str] = []
        self.ran: list[str] = []

    def ready(self, process: str, step: str, *upstream) -> bool:
        """False (and noted) when the step's command is missing or an input was skipped upstream."""
        if any(u is None for u in upstream):
            self.skipped.append(f"{process} (input skipped)")
            return False
        if step in MODULES and step != "test_gem" and step not in APP_STEPS:
            self.skipped.append(f"{process} (`csrefiner {step}` missing)")
            return False
        return True

    def task(
        self,
        process: str,
        step: str,
        meta: dict,
        inputs: dict,
        staged: dict,
        defs: dict | None = None,
        selector: str | None = None,
    ) -> dict:
        """Stage inputs ({into-folder or '': files}), render ext.args and the script, run, return outputs."""
        module = MODULES[step]
        workdir = self.work / f"{process}.{meta['id']}.{len(self.ran)}"
        for into, files in staged.items():
            stage(workdir, files, into or None)
        ext = {}
        if (selector or process) in EXT:
            ext["args"] = render(EXT[selector or process], {"params": self.params, "meta": meta}).strip()
        if (selector or process) in PREFIX:
            ext["prefix"] = PREFIX[selector or process]
        ctx = task_context(module, meta, inputs, ext=ext, defs=defs)
        outputs = run_task(module, ctx, workdir, env=ENV)
        self.ran.append(f"{process}:{meta['id']}")
        return {**outputs, "workdir": workdir}


def segment(flow: Flow, process: str, meta: dict, model_dir: Path | None, images: list[Path]) -> dict:
    staged = f"model/{model_dir.name}" if model_dir else ""  # stageAs 'model/*': never clashes with the output
    model_arg = f"--model-dir {staged}" if model_dir else f"--model {meta['backend']}:{meta['model_name']}"
    return flow.task(
        process,
        "segment",
        meta,
        {"model": staged, "images": "input", "model_cache": ""},
        {"model": [model_dir] if model_dir else [], "input": images},
        defs={"model_arg": model_arg, "device": "cpu", "cache_dir": ""},
    )


def finetune_task(flow: Flow, process: str, meta: dict, train: list[Path], val: list[Path], base: Path | None) -> Path:
    out = flow.task(
        process,
        "finetune",
        meta,
        {"train": "train", "val": "val" if val else "", "base_model": base.name if base else "", "model_cache": ""},
        {"train": train, "val": val, "": [base] if base else []},
        defs={
            "pretrained": base.name if base else meta["pretrained"],
            "device": "cpu",
            "cache_dir": "",
            "val_arg": "--val val" if val else "",
        },
    )
    return out["model"][0]


def segment_slide(
    flow: Flow, slide: dict, image: Path, model: dict, model_dir: Path | None, per_task: int
) -> dict | None:
    """SEGMENT_SLIDE: TILE, one SEGMENT_TILES task per `per_task` tiles, regrouped per slide, STITCH; the
    stitched outputs (None when a step was skipped)."""
    if not flow.ready("TILE", "tile"):
        return None
    tiled = flow.task("TILE", "tile", slide, {"image": image.name}, {"": [image]})
    tiles = sorted(tiled["tiles"], key=lambda t: t.name)
    batches = [tiles[i : i + per_task] for i in range(0, len(tiles), per_task)]
    assert len(batches) > 1, "the test profile should make several tile batches"
    tile_masks = []
    for i, batch in enumerate(batches):
        if flow.ready("SEGMENT_TILES", "segment", model_dir):
            meta = {
                **slide,
                "id": f"{slide['id']}.b{i}",
                "slide": slide,
                "batches": len(batches),
                "backend": model["backend"],
                "model_name": model["model_name"],
            }
            tile_masks += segment(flow, "SEGMENT_TILES", meta, model_dir, batch)["masks"]
    if not tile_masks:
        flow.skipped.append("STITCH (no tile masks)")
        return None
    if not flow.ready("STITCH", "stitch"):
        return None
    manifest = tiled["manifest"][0]
    stitched = flow.task(
        "STITCH",
        "stitch",
        slide,
        {"manifest": manifest.name, "tiles": "tiles"},
        {"": [manifest], "tiles": sorted(tile_masks, key=lambda t: t.name)},
    )
    labels = read_labels(stitched["mask"][0])
    assert labels.dtype == np.uint32 and labels.shape == read_image(image).shape[:2]
    return stitched


def test_models_profile_flow(tmp_path):
    P = pipeline_params("test_models")
    flow = Flow(tmp_path, P)
    assert P["synth_test"] is True

    # --- SYNTH_TEST_DATA: patches, slide, GEM (and the same inputs give the same bytes: -resume relies on it)
    synth_meta = {
        "id": "patches",
        "n": P["synth_patches"],
        "size": P["synth_patch_size"],
        "style": P["synth_style"],
        "seed": 1,
    }
    slide_meta = {"id": "slideA", "n": 1, "size": P["synth_slide_size"], "style": P["synth_style"], "seed": 7}
    patches = flow.task("SYNTH", "synth", synth_meta, {}, {})["dir"][0]
    slide_out = flow.task("SYNTH", "synth", slide_meta, {}, {})
    slide_image = slide_out["images"][0]
    again = flow.task("SYNTH", "synth", {**synth_meta, "id": "patches_again"}, {}, {})["dir"][0]
    assert sorted(p.read_bytes() for p in patches.iterdir()) == sorted(p.read_bytes() for p in again.iterdir())
    gem_meta = {"id": "slideA", "size": P["synth_slide_size"]}
    gem = flow.task("TEST_GEM", "test_gem", gem_meta, {}, {})["gem"][0]
    gem2 = flow.task("TEST_GEM", "test_gem", {**gem_meta, "id": "slideA_again"}, {}, {})["gem"][0]
    assert gem.read_bytes() == gem2.read_bytes()

    # --- FINETUNE_EVALUATE
    models = parse_models(P["models"])
    train, val = split_patches(patches, P["val_every"])
    assert len(val) == 2 * (P["synth_patches"] // P["val_every"]) and len(train) + len(val) == 2 * P["synth_patches"]
    val_images = [f for f in val if f.name.endswith("-img.tif")]
    val_masks = [f for f in val if f.name.endswith("-mask.tif")]
    tuned = {}
    for m in models:
        if flow.ready("FINETUNE", "finetune"):
            tuned[m["id"]] = finetune_task(flow, "FINETUNE", m, train, val, None)
            assert (tuned[m["id"]] / "model.json").is_file()
    preds = []
    for m in models:  # `before` needs a pretrained model: the test profile trains from scratch
        if flow.ready("SEGMENT_VAL", "segment", tuned.get(m["id"])):
            meta = {**m, "id": f"{m['id']}.after"}
            preds.append(segment(flow, "SEGMENT_VAL", meta, tuned[m["id"]], val_images)["dir"][0])
    if preds and flow.ready("EVALUATE", "evaluate"):
        report = flow.task(
            "EVALUATE",
            "evaluate",
            {"id": "validation"},
            {"gt": "gt", "preds": [p.name for p in preds]},
            {"gt": val_masks, "": preds},
            defs={"pred_args": " ".join(f"--pred {p.name} --name {p.name}" for p in preds)},
        )
        summary = json.loads(report["summary"][0].read_text())
        assert set(summary["methods"]) == {p.name for p in preds}
    else:
        flow.skipped.append("EVALUATE (no predictions)")

    # --- SEGMENT_SLIDE: tile, one task per batch of tiles, regroup, stitch
    slide = {"id": "slideA"}
    slide_model = next(m for m in models if m["id"] == P["slide_model"]) if P.get("slide_model") else models[0]
    stitched = segment_slide(flow, slide, slide_image, slide_model, tuned.get(slide_model["id"]), P["tiles_per_task"])
    mask = stitched["mask"][0] if stitched else None

    # --- CGEF
    if flow.ready("CGEF", "cgef", mask):
        out = flow.task("CGEF", "cgef", slide, {"mask": mask.name, "matrix": gem.name}, {"": [mask, gem]})
        h5py = pytest.importorskip("h5py")
        with h5py.File(out["gef"][0], "r") as f:
            n_cells = f["cellBin"]["cell"].shape[0]
        n_labels = len(np.unique(read_labels(mask))) - 1
        assert (0 < n_cells <= n_labels) if n_labels else n_cells == 0

    # --- SUGGEST_PATCHES (human in the loop)
    if P["suggest_top"] > 0 and len(models) > 1 and flow.ready("CROP", "crop"):
        crops = flow.task("CROP", "crop", slide, {"image": slide_image.name}, {"": [slide_image]})["images"]
        dirs = []
        for m in models:
            if flow.ready("SEGMENT_PATCHES", "segment", tuned.get(m["id"])):
                meta = {
                    **slide,
                    "id": f"slideA.{m['id']}",
                    "slide": slide,
                    "backend": m["backend"],
                    "model_name": m["model_name"],
                }
                dirs.append(segment(flow, "SEGMENT_PATCHES", meta, tuned[m["id"]], crops)["dir"][0])
        dirs.sort(key=lambda d: d.name)
        pred_args = " ".join(f"--pred {d.name}" for d in dirs)
        if len(dirs) == len(models) and flow.ready("CONSENSUS", "consensus"):
            flow.task(
                "CONSENSUS",
                "consensus",
                slide,
                {"preds": [d.name for d in dirs]},
                {"": dirs},
                defs={"pred_args": pred_args},
            )
        if len(dirs) == len(models) and flow.ready("SUGGEST", "suggest"):
            out = flow.task(
                "SUGGEST",
                "suggest",
                slide,
                {"preds": [d.name for d in dirs], "images": "images", "top": P["suggest_top"]},
                {"": dirs, "images": crops},
                defs={"pred_args": pred_args},
            )
            assert len(list(out["dir"][0].rglob("*-img.tif"))) <= P["suggest_top"]

    report_skips(flow)


def report_skips(flow: Flow) -> None:
    if flow.skipped:
        message = "test-profile flow ran " + ", ".join(flow.ran) + "; SKIPPED: " + "; ".join(flow.skipped)
        if STRICT:
            pytest.fail(message)
        warnings.warn(message, stacklevel=2)
        print(message)


def demo_args(spec: dict, step: str, backend: str) -> str:
    """utils_csrefiner demoArgs."""
    return " ".join([spec["options"][step], spec["backend_options"][step].get(backend, "")]).strip()


def workflow_calls(nf: Path) -> list[str]:
    """The processes and subworkflows a workflow file calls (`NAME(` of an included name), in order."""
    text = nf.read_text()
    included = {
        item.split(" as ")[-1].strip()
        for names in re.findall(r"include\s*\{([^}]*)\}", text)
        for item in names.split(";")
    }
    return [name for name in re.findall(r"^\s*([A-Z][A-Z_]*)\(", text, re.M) if name in included]


def test_demo_steps_are_defined_once():
    """csrefiner/demo/steps.py is the demo's one list of steps: workflows/demo.nf calls exactly its processes in
    its order, `demo run` has exactly a runner per step, demo.json holds the options of exactly the steps that
    have some, and every such option is one of the step's command (so the pipeline's task accepts it)."""
    from csrefiner.demo import make_config
    from csrefiner.demo.flow import RUNNERS
    from csrefiner.demo.steps import STEPS, step_options

    assert workflow_calls(REPO / "workflows" / "demo.nf") == [s.process for s in STEPS]
    assert list(RUNNERS) == [s.name for s in STEPS]
    options = step_options(make_config(quick=True))
    assert list(options) == [s.name for s in STEPS if s.options]
    modules = aliases()
    commands = typer.main.get_command(app)
    for s in STEPS:
        if s.process in modules:  # SEGMENT_SLIDE is a subworkflow (tile, segment, stitch)
            assert modules[s.process].replace("_", " ") == s.command, s
        cmd = commands
        for word in s.command.split():
            cmd = cmd.commands[word]
        known = {o for p in cmd.params for o in p.opts}
        flags = {w for w in options.get(s.name, "").split() if w.startswith("--")}
        assert flags <= known, (s.name, flags - known)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The session's one `demo run --quick` (tests/demo_run.py): the outputs every demo task must give."""
    pytest.importorskip("cellpose")
    from demo_run import demo_run

    return demo_run(tmp_path_factory)


def files(folder: Path, pattern: str, skip: tuple = ()) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.glob(pattern) if p.is_file() and p.name not in skip)


def same_files(folder: Path, ref: Path, pattern: str = "**/*.tif", skip: tuple = ()) -> bool:
    """The same files (relative names) with the same bytes."""
    ours = files(folder, pattern, skip)
    return (
        bool(ours)
        and ours == files(ref, pattern, skip)
        and all((folder / f).read_bytes() == (ref / f).read_bytes() for f in ours)
    )


def mask_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*-mask.tif"))


def same_masks(folder: Path, ref: Path) -> bool:
    ours = mask_names(folder)
    if not ours or ours != mask_names(ref):
        return False
    return all(np.array_equal(read_labels(folder / n), read_labels(ref / n)) for n in ours)


def hyperparameters(model_dir: Path) -> dict:
    """What a model was trained with (its card): epochs planned and run, lr, batch size, seed, backend knobs."""
    return json.loads((model_dir / "model.json").read_text())["hyperparameters"]


def macro_f1(summary: Path) -> dict[str, float]:
    return {k: v["macro"]["f1"] for k, v in json.loads(summary.read_text())["methods"].items()}


def test_demo_profile_flow(tmp_path, reference):
    """-profile test (workflows/demo.nf): each demo step as its pipeline task, fed the files of the session's
    `demo run` (the reference, tests/demo_run.py), gives that run's outputs (same options, same numbers), and
    DEMO_REPORT over the tasks' outputs gives its report. The demo runs end to end once, in the reference."""
    from csrefiner.demo import layout as L
    from csrefiner.demo.summary import best_model

    ref = reference.out
    P = pipeline_params("test")
    flow = Flow(tmp_path, P)
    assert P["demo"] is True
    models = parse_models(P["models"])
    assert all(m["pretrained"] == "scratch" for m in models)
    assert [m["id"] for m in models] == list(reference.summary["gain"])  # the reference ran the profile's models

    # DEMO_DATA: the reference's data byte for byte, and each step's options (meta.args) from its demo.json
    data = flow.task("DEMO_DATA", "demo_data", {"id": "demo"}, {}, {})
    spec = json.loads(data["spec"][0].read_text())
    assert spec["config"]["quick"] and spec["config"]["tile"] == P["tile_size"]
    ref_spec = json.loads((ref / L.DEMO_JSON).read_text())
    for key in ("options", "backend_options", "data"):
        assert spec[key] == ref_spec[key], key
    run_only = ("models", "pretrained")  # `demo run` options that `demo data` does not take
    assert {k: v for k, v in spec["config"].items() if k not in run_only} == {
        k: v for k, v in ref_spec["config"].items() if k not in run_only
    }
    assert same_files(data["data"][0], ref / L.DATA, "**/*", skip=(Path(L.DEMO_JSON).name,))

    def ref_tifs(rel: str, pattern: str = "*.tif") -> list[Path]:
        return sorted((ref / rel).glob(pattern))

    def ref_model(m: dict, stage: str) -> Path:
        return ref / L.model_dir(m["id"], stage)

    # FINETUNE_BASELINE on the easy block: trained as the reference's baseline was
    base = {}
    for m in models:
        meta = {**m, "id": f"{m['id']}-baseline", "model": m, "args": demo_args(spec, "baseline", m["backend"])}
        train, val = ref_tifs(L.EASY_TRAIN), ref_tifs(L.EASY_VAL)
        base[m["id"]] = finetune_task(flow, "FINETUNE_BASELINE", meta, train, val, None)
        assert hyperparameters(base[m["id"]]) == hyperparameters(ref_model(m, L.BASELINE))
    baselines = [({**m, "id": f"{m['id']}-baseline"}, ref_model(m, L.BASELINE)) for m in models]
    finetuned = [({**m, "id": f"{m['id']}-finetuned"}, ref_model(m, L.FINETUNED)) for m in models]
    watershed = ({"id": "watershed", "backend": "watershed", "model_name": "default"}, None)

    # TILE_POOL, SEGMENT_POOL (baselines + watershed), SUGGEST_POOL, DEMO_ANNOTATE
    pool = flow.task(
        "TILE_POOL",
        "tile",
        {"id": "demo", "args": spec["options"]["pool_tile"]},
        {"image": Path(L.POOL).name},
        {"": [ref / L.POOL]},
    )
    assert same_files(pool["manifest"][0].parent, ref / L.POOL_TILES)
    tiles = ref_tifs(L.POOL_TILES, "*-img.tif")
    for meta, model in baselines + [watershed]:
        out = segment(flow, "SEGMENT_POOL", meta, model, tiles)["dir"][0]
        ref_pred = ref / L.predictions("pool", out.name)
        if model is None:  # watershed: the same masks; the models' are scored by EVALUATE below
            assert same_masks(out, ref_pred)
        assert mask_names(out) == mask_names(ref_pred)
    pool_preds = sorted((ref / "predictions" / "pool").iterdir(), key=lambda d: d.name)
    suggested = flow.task(
        "SUGGEST_POOL",
        "suggest",
        {"id": "pool", "args": spec["options"]["suggest"]},
        {"preds": [d.name for d in pool_preds], "images": "images", "top": spec["config"]["patches"]},
        {"": pool_preds, "images": tiles},
        defs={"pred_args": " ".join(f"--pred {d.name}" for d in pool_preds)},
    )["dir"][0]
    assert suggested.name == "suggest"
    assert same_files(suggested / "patches", ref / L.SUGGEST / "patches")
    annotated = flow.task(
        "DEMO_ANNOTATE",
        "demo_annotate",
        {"id": "pool"},
        {"suggested": "suggest", "data": "data"},
        {"": [ref / L.SUGGEST, ref / L.DATA]},
    )
    assert len(annotated["patches"]) == 2 * spec["config"]["patches"]
    assert same_files(annotated["dir"][0], ref / L.ANNOTATED, "*")  # patches and annotate.json

    # FINETUNE_ANNOTATED from each baseline (finetune holds out its own share: no val staged)
    tuned = {}
    for m in models:
        meta = {
            **m,
            "id": f"{m['id']}-finetuned",
            "model": m,
            "pretrained": "base_model",
            "args": demo_args(spec, "finetune", m["backend"]),
        }
        tuned[m["id"]] = finetune_task(
            flow, "FINETUNE_ANNOTATED", meta, ref_tifs(L.ANNOTATED), [], ref_model(m, L.BASELINE)
        )
        assert hyperparameters(tuned[m["id"]]) == hyperparameters(ref_model(m, L.FINETUNED))

    # SEGMENT_EVAL + EVALUATE per patch set, with the reference's models: the reference's scores
    evaluations, preds_by_set = [], {}
    for name, gt in L.eval_sets(ref).items():
        preds = sorted(
            (
                segment(flow, "SEGMENT_EVAL", {**meta, "set": name}, model, sorted(gt.glob("*-img.tif")))["dir"][0]
                for meta, model in baselines + finetuned + [watershed]
            ),
            key=lambda d: d.name,
        )
        assert len(preds) == 2 * len(models) + 1
        preds_by_set[name] = preds
        evaluations.append(
            flow.task(
                "EVALUATE",
                "evaluate",
                {"id": name},
                {"gt": "gt", "preds": [p.name for p in preds]},
                {"gt": sorted(gt.glob("*-mask.tif")), "": preds},
                defs={"pred_args": " ".join(f"--pred {p.name} --name {p.name}" for p in preds)},
            )
        )
        ref_f1 = macro_f1(ref / L.evaluation(name) / "summary.json")
        assert macro_f1(evaluations[-1]["summary"][0]) == pytest.approx(ref_f1, abs=1e-3), name
    hard = json.loads(evaluations[0]["summary"][0].read_text())
    ids = [m["id"] for m in models]
    best = best_model(hard, ids)
    assert best == reference.summary["slide"]["model"].removesuffix(f"-{L.FINETUNED}")
    slide_model = next((meta, model) for meta, model in finetuned if meta["id"] == f"{best}-finetuned")

    # SEGMENT_SLIDE with the best model, CGEF on the reference's mask
    slide = {"id": "slide"}
    stitched = segment_slide(flow, slide, ref / L.SLIDE_IMAGE, slide_model[0], slide_model[1], P["tiles_per_task"])
    counts = json.loads(stitched["report"][0].read_text())
    assert counts["tiles"] == reference.summary["slide"]["tiles"]
    assert counts["objects"] == pytest.approx(reference.summary["slide"]["objects"], rel=0.01)
    cgef = flow.task(
        "CGEF",
        "cgef",
        slide,
        {"mask": Path(L.SLIDE_MASK).name, "matrix": Path(L.GEM).name},
        {"": [ref / L.SLIDE_MASK, ref / L.GEM]},
    )
    h5py = pytest.importorskip("h5py")
    with h5py.File(cgef["gef"][0], "r") as f:
        assert f["cellBin"]["cell"].shape[0] == reference.summary["stereo"]["cells"]

    # DEMO_REPORT: the tasks' outputs staged into the run layout
    report = flow.task(
        "DEMO_REPORT",
        "demo_report",
        {"id": "demo"},
        {
            k: k
            for k in (
                "data",
                "models",
                "suggested",
                "annotated",
                "evaluations",
                "hard_preds",
                "real_preds",
                "wsi",
                "stereo",
            )
        },
        {
            "": data["data"] + [suggested, annotated["dir"][0]],  # stageAs 'suggest', 'annotated'
            "models": list(base.values()) + list(tuned.values()),
            "evaluation": [e["report"][0] for e in evaluations],
            "predictions/heldout_hard": preds_by_set["heldout_hard"],
            "predictions/real": preds_by_set.get("real", []),
            "wsi": stitched["mask"] + stitched["report"] + stitched["preview"],
            "stereo": cgef["gef"] + cgef["h5ad"],
        },
    )
    summary = json.loads(report["summary"][0].read_text())
    g = summary["gain"]["cellpose"]
    assert g["f1_gain"] > 0.1, g  # as in tests/test_demo.py: the pipeline's demo shows the same gain
    assert g["f1_gain"] == pytest.approx(reference.summary["gain"]["cellpose"]["f1_gain"], abs=1e-3)
    assert summary["slide"]["objects"] > 0 and summary["stereo"]["cells"] > 0
    assert "pipeline_info" in report["html"][0].read_text()
    report_skips(flow)
