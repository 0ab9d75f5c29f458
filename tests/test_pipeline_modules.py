"""Module contracts that hold without Nextflow: stub blocks make every declared output and a valid versions tuple
on the `versions` topic, scripts set the writable caches (bin/task_home.sh, sourced: the one place they are
written), outputs carry no timestamps, and the configs, schemas and params agree."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
import yaml
from nf_modules import REPO, inline_sourced, load_modules, pipeline_params, render, run_task, task_context

MODULES = load_modules()
ENV = {
    "PATH": os.pathsep.join([os.path.dirname(sys.executable), str(REPO / "bin"), os.environ.get("PATH", "")]),
    "PYTHONPATH": str(REPO),
}

# Inputs and non-trivial defs each module's script sees, as Nextflow would bind them for a small task.
STUB_INPUTS = {
    "synth": ({"id": "p", "n": 2, "size": 64, "style": "easy", "seed": 1}, {}, {}),
    "test_gem": ({"id": "s", "size": 64}, {}, {}),
    "tile": ({"id": "s"}, {"image": "s.tif"}, {}),
    "crop": ({"id": "s"}, {"image": "s.tif"}, {}),
    "finetune": (
        {"id": "cellpose", "backend": "cellpose", "pretrained": "scratch"},
        {"train": "train", "val": "val", "base_model": "", "model_cache": ""},
        {"pretrained": "scratch", "device": "cpu", "cache_dir": "", "val_arg": "--val val"},
    ),
    "segment": (
        {"id": "s.b0", "backend": "cellpose", "model_name": "cyto3"},
        {"model": "", "images": "input", "model_cache": ""},
        {"model_arg": "--model cyto3", "device": "cpu", "cache_dir": ""},
    ),
    "stitch": ({"id": "s"}, {"manifest": "m.json", "tiles": "tiles"}, {}),
    "evaluate": (
        {"id": "validation"},
        {"gt": "gt", "preds": "a.after"},
        {"pred_args": "--pred a.after --name a.after"},
    ),
    "consensus": ({"id": "s"}, {"preds": "a b"}, {"pred_args": "--pred a --pred b"}),
    "suggest": ({"id": "s"}, {"preds": "a b", "images": "images", "top": 2}, {"pred_args": "--pred a --pred b"}),
    "cgef": ({"id": "s"}, {"mask": "s-mask.tif", "matrix": "s.gem.gz"}, {}),
    "demo_data": ({"id": "demo"}, {}, {}),
    "demo_annotate": ({"id": "pool"}, {"suggested": "suggest", "data": "data"}, {}),
    "demo_report": (
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
        {},
    ),
}


def test_stub_inputs_cover_every_module():
    assert set(STUB_INPUTS) == set(MODULES)


def software_versions_entry(process: str, tool: str, version: str) -> str:
    """main.nf's software_versions.yml entry for one [process, tool, version] of the `versions` topic."""
    return f'"{process}":\n    {tool}: {version}\n'


@pytest.mark.parametrize("step", sorted(MODULES))
def test_stub_makes_declared_outputs(step, tmp_path):
    """`-stub` runs (nf-test, dry runs) must produce what the output block declares, plus the versions tuple
    (eval() outputs run after the stub too) on the `versions` topic."""
    meta, inputs, defs = STUB_INPUTS[step]
    module = MODULES[step]
    ctx = task_context(module, meta, inputs, defs=defs)
    found = run_task(module, ctx, tmp_path, env=ENV, stub=True)
    tool = "python" if step == "test_gem" else "csrefiner"
    assert [o.topic for o in module.outputs if o.emit == "versions"] == ["versions"]
    assert len(found["versions"]) == 1 and len(found["versions"][0]) == 3, found["versions"]
    process, name, version = found["versions"][0]
    versions = software_versions_entry(process, name, version)
    assert re.fullmatch(rf'"{module.process}":\n    {tool}: \d+\.\d+\S*\n', versions), versions
    assert yaml.safe_load(versions) == {module.process: {tool: version}}
    assert not (tmp_path / "versions.yml").exists()


@pytest.mark.parametrize("step", sorted(set(MODULES) - {"test_gem"}))
def test_script_sets_writable_caches(step):
    """HOME, MPLCONFIGDIR, CELLPOSE_LOCAL_MODELS_PATH and KERAS_HOME point into the task folder (containers run
    as an arbitrary user with a read-only image)."""
    meta, inputs, defs = STUB_INPUTS[step]
    module = MODULES[step]
    script = inline_sourced(render(module.script, task_context(module, meta, inputs, defs=defs)))
    for var in ("HOME", "MPLCONFIGDIR", "CELLPOSE_LOCAL_MODELS_PATH", "KERAS_HOME"):
        assert re.search(rf'\b{var}="\$PWD/', script), f"{step}: {var} not set to a task-local folder"
    assert script.index("KERAS_HOME") < script.index("csrefiner ")


def test_caches_are_set_in_one_place():
    """bin/task_home.sh is the one place HOME and the caches are written: modules source it, none repeats it."""
    helper = (REPO / "bin" / "task_home.sh").read_text()
    for var in ("HOME", "MPLCONFIGDIR", "NUMBA_CACHE_DIR", "CELLPOSE_LOCAL_MODELS_PATH", "KERAS_HOME"):
        assert re.search(rf'\b{var}="\$PWD/\.home\b', helper), var
    for step, module in MODULES.items():
        for section in (module.script, module.stub):
            assert not re.search(
                r"\b(HOME|MPLCONFIGDIR|NUMBA_CACHE_DIR|CELLPOSE_LOCAL_MODELS_PATH|KERAS_HOME)=", section
            ), f"{step}: sets a cache variable itself; source task_home.sh instead"
        if step != "test_gem":
            assert re.search(r"^\s*source task_home\.sh$", module.script, re.M), step


def test_outputs_have_no_timestamps():
    for step, module in MODULES.items():
        for out in module.outputs:
            assert not re.search(r"date|time|\$\(|random|uuid", out.pattern, re.I), f"{step}: {out.pattern}"


def test_params_schema_and_config_agree():
    """Every param in the configs is in nextflow_schema.json with the same default, and vice versa."""
    schema = json.loads((REPO / "nextflow_schema.json").read_text())
    props = {k: v for group in schema["$defs"].values() for k, v in group["properties"].items()}
    params = pipeline_params()
    assert set(params) == set(props), (sorted(set(params) - set(props)), sorted(set(props) - set(params)))
    for name, value in params.items():
        if value is not None:
            assert props[name].get("default") == value, (
                f"{name}: config {value!r} vs schema {props[name].get('default')!r}"
            )
        else:
            assert "default" not in props[name], name
    for profile in ("test", "test_models"):
        for name in pipeline_params(profile):
            assert name in props, f"conf/{profile}.config sets unknown param {name}"


def test_test_profile_tiles_like_the_quick_demo():
    """-profile test is `csrefiner demo run --quick`: its whole-slide tiling is the quick preset's."""
    from csrefiner.demo import make_config

    cfg, params = make_config(quick=True), pipeline_params("test")
    assert params["demo"] is True and params["demo_args"] == "--quick"
    assert (params["tile_size"], params["tile_overlap"]) == (cfg.tile, cfg.overlap)


def test_samplesheet_schema():
    schema = json.loads((REPO / "assets" / "schema_input.json").read_text())
    item = schema["items"]
    assert list(item["properties"]) == ["sample", "image", "matrix", "patches"]
    assert item["required"] == ["sample", "image"]
    assert item["properties"]["patches"]["format"] == "directory-path"
    header = (REPO / "assets" / "samplesheet.csv").read_text().splitlines()[0]
    assert header.split(",") == list(item["properties"])
    for key, pattern_ok, pattern_bad in [("image", "a/b.ome.tif", "a/b.txt"), ("matrix", "c.gem.gz", "c.csv")]:
        pat = re.compile(item["properties"][key]["pattern"])
        assert pat.match(pattern_ok) and not pat.match(pattern_bad)


def test_gpu_profile_sets_accelerator_for_gpu_label():
    text = (REPO / "nextflow.config").read_text()
    gpu = re.search(r"^    gpu \{(.*?)^    \}", text, re.M | re.S).group(1)
    assert re.search(r"withLabel: 'process_gpu' \{\s*accelerator = 1", gpu)
    assert "--gpus all" in gpu and "--nv" in gpu
    base = (REPO / "conf" / "base.config").read_text()
    assert "withLabel: 'process_gpu'" in base and "accelerator" not in base.split("withLabel: 'process_gpu'")[1]
    for step in ("finetune", "segment"):
        assert "label 'process_gpu'" in MODULES[step].path.read_text()
