"""Backend `--option KEY=VALUE`s: one declaration per option (csrefiner.models.options.Option) and one parser.

Unknown keys and values of the wrong type are refused before any work, naming the option; `csrefiner models
options BACKEND` lists what a backend reads; docs/backends.md names every option. No framework is imported.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from csrefiner.errors import CsrefinerError
from csrefiner.models import backend_names, get_backend
from csrefiner.models.base import Pretrained, TrainParams
from csrefiner.models.options import TYPES

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", backend_names())
def test_every_option_is_declared_once_with_a_default_of_its_type(name):
    backend = get_backend(name)
    names = [o.name for o in backend.option_specs]
    assert len(names) == len(set(names))
    for o in backend.option_specs:
        assert o.type in TYPES and o.help, o
        assert not o.choices or (o.type == "str" and o.default in o.choices), o
        if o.default is not None:
            parsed = o.parse(o.shown_default())  # what `models options` shows reads back as the default
            assert parsed == (list(o.default) if o.type == "ints" else o.default), o


def test_values_are_typed_with_defaults_for_the_rest():
    backend = get_backend("cellbin")
    opts = backend.option_values({"patch": "64", "target": "FG", "dropout": "0"})
    assert opts["patch"] == 64 and opts["target"] == "fg" and opts["dropout"] == 0.0
    assert opts["base"] == 64 and opts["h"] == 2.0 and opts["channels"] is None  # declared defaults
    assert opts.raw == {"patch": "64", "target": "FG", "dropout": "0"}  # as given: what the model card records
    assert opts.given == {"patch": 64, "target": "fg", "dropout": 0.0}
    assert opts.over({"h": 3.0, "patch": 128}, "h") == 3.0 and opts.over({"patch": 128}, "patch") == 64
    assert get_backend("cellpose").option_values({"nbase": "2,16,32,64,256"})["nbase"] == [2, 16, 32, 64, 256]
    assert get_backend("cellvit").option_values({"encoder": "SAM-B"})["encoder"] == "sam-b"  # as before: any case


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("stardist", {"repeats": "many"}, "--option repeats=many: give a whole number"),
        ("stardist", {"patch_size": ""}, "--option patch_size=: give a whole number"),
        ("watershed", {"sigma": "wide"}, "--option sigma=wide: give a number"),
        ("cellpose", {"nbase": "2,x,256"}, "--option nbase=2,x,256: give whole numbers separated by commas"),
        ("cpsam", {"encoder": "vit_h"}, "--option encoder=vit_h: use one of vit_l, vit_b, tiny"),
        ("cellvit", {"encoder": "vit512"}, "--option encoder=vit512: use one of vit256, sam-b, sam-l, sam-h"),
        ("cellbin", {"target": "both"}, "--option target=both: use one of border, fg"),
        # unknown keys: the message the fault catalogue (tests/faults/test_inputs.py) expects, unchanged
        (
            "watershed",
            {"min_distanse": "3"},
            "--option min_distanse: not an option of backend 'watershed'; its options are min_distance, sigma",
        ),
    ],
)
def test_bad_options_are_refused_naming_the_option(name, options, message):
    with pytest.raises(CsrefinerError) as err:
        get_backend(name).check_options(options)
    assert str(err.value) == message


def test_scratch_only_options_are_refused_for_a_pretrained_architecture():
    backend = get_backend("stardist")
    base = Pretrained("2D_versatile_fluo", Path("/models/2D_versatile_fluo"))
    with pytest.raises(CsrefinerError) as err:
        backend.check_scratch_options({"grid": "4", "n_rays": "16", "repeats": "2"}, base)
    assert str(err.value) == (
        "--option grid, n_rays: the architecture comes from the base model 2D_versatile_fluo; "
        "these options only apply with --pretrained scratch"
    )
    backend.check_scratch_options({"grid": "4", "n_rays": "16"}, Pretrained("scratch"))
    backend.check_scratch_options({"repeats": "2", "patch_size": "64"}, base)


def test_parsed_options_build_the_same_configs_as_before():
    """What the backends make of options (saved with the model) is what the per-backend casts made."""
    from csrefiner.models.backends.cellbin import BACKEND as cellbin

    config = cellbin._config(Pretrained("scratch"), TrainParams(options={"base": "8", "dropout": "0", "patch": "64"}))
    assert list(config.items()) == [
        ("patch", 64),
        ("base", 8),
        ("dropout", 0.0),
        ("target", "border"),
        ("border_weight", 5.0),
        ("dice", 1.0),
        ("clahe", 1),
        ("threshold", 0.5),
        ("h", 2.0),
        ("min_size", 16),
        ("stain", "ss"),
        ("channels", 1),
    ]
    from csrefiner.models.backends.cellvit import BACKEND as cellvit

    settings = cellvit._settings(TrainParams(options={"window": "64", "overlap": "16", "ksize": "7"}), None, 128)
    assert list(settings.items()) == [
        ("stain", "ss"),
        ("prob_threshold", 0.5),
        ("marker_threshold", 0.4),
        ("ksize", 7),
        ("min_size", 10),
        ("window", 64),
        ("overlap", 16),
    ]
    saved = {
        "stain": "he",
        "prob_threshold": 0.6,
        "marker_threshold": 0.5,
        "ksize": 11,
        "min_size": 10,
        "window": 256,
        "overlap": 64,
    }
    assert cellvit._settings(TrainParams(options={"min_size": "3"}), saved, 128) == saved | {"min_size": 3}
    from csrefiner.models.backends.watershed import BACKEND as watershed

    seg = watershed.load(watershed.resolve("default"), TrainParams(options={"min_distance": "6"}))
    assert (seg.min_distance, seg.sigma) == (6, 1.0)


def test_cellvit_encoder_choices_are_the_published_presets():
    pytest.importorskip("torch")
    from csrefiner.models.backends.cellvit import ENCODERS
    from csrefiner.models.cellvit.config import PRESETS

    assert ENCODERS == tuple(PRESETS)


def test_cpsam_encoder_choices_are_its_presets():
    from csrefiner.models.backends.cpsam import BACKEND, PRESETS

    (encoder,) = [o for o in BACKEND.option_specs if o.name == "encoder"]
    assert encoder.choices == tuple(PRESETS)


def _docs_section(name: str) -> str:
    text = (REPO / "docs" / "backends.md").read_text()
    m = re.search(rf"^## [^\n]*`--model {name}`.*?(?=^## |\Z)", text, re.M | re.S)
    assert m, f"docs/backends.md has no section for `--model {name}`"
    return m.group(0)


@pytest.mark.parametrize("name", backend_names())
def test_docs_name_every_option(name):
    section = _docs_section(name)
    missing = [o.name for o in get_backend(name).option_specs if not re.search(rf"`{o.name}[`=]", section)]
    assert not missing, f"docs/backends.md, `--model {name}`: options not mentioned: {missing}"


def test_models_options_lists_them_without_importing_a_framework():
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from csrefiner.cli import app\n"
        "for name in ('cellpose', 'cellvit', 'cpsam', 'stardist', 'cellbin', 'watershed'):\n"
        "    r = CliRunner().invoke(app, ['models', 'options', name])\n"
        "    assert r.exit_code == 0, r.output\n"
        "    print(r.output)\n"
        "heavy = sorted(m for m in ('torch', 'tensorflow', 'keras', 'cellpose', 'stardist') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "stardist: StarDist 2D (tensorflow); default pretrained '2D_versatile_fluo'" in out
    row = next(line for line in out.splitlines() if line.split()[:1] == ["n_rays"])
    assert row.split()[1:3] == ["int", "32"] and "from scratch only" in row
    row = next(line for line in out.splitlines() if line.split()[:1] == ["target"])
    assert row.split()[1:3] == ["border|fg", "border"]
    for name in backend_names():
        for o in get_backend(name).option_specs:
            assert re.search(rf"^\s+{o.name}\s", out, re.M), o.name


def test_models_options_of_an_unknown_backend_is_one_error_line(cli):
    proc = cli("models", "options", "cellpse", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: unknown model backend 'cellpse'; choose one of cellpose, cellvit, cpsam, stardist, cellbin, watershed"
    ]
