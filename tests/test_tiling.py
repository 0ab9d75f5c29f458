"""The tile grid and its manifest: coverage, ownership, ragged edges, validation, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

from csrefiner.errors import CsrefinerError
from csrefiner.wsi.manifest import Manifest
from csrefiner.wsi.tiling import axis_starts, plan_tiles


@pytest.mark.parametrize(
    "shape,size,overlap", [((1000, 1300), 512, 64), ((257, 256), 256, 0), ((90, 700), 128, 127), ((50, 40), 512, 64)]
)
def test_tiles_cover_slide_and_cores_partition_it(shape, size, overlap):
    tiles = plan_tiles(shape, size, overlap)
    covered = np.zeros(shape, dtype=np.int32)
    owned = np.zeros(shape, dtype=np.int32)
    for t in tiles:
        covered[t.box] += 1
        y0, y1, x0, x1 = t.core
        owned[y0:y1, x0:x1] += 1
        assert t.x + t.w <= shape[1] and t.y + t.h <= shape[0]
        assert t.w <= size and t.h <= size
        core = owned[t.box][t.local_core]  # the core lies inside its own tile
        assert core.size == (y1 - y0) * (x1 - x0)
    assert covered.min() >= 1
    assert (owned == 1).all()  # every pixel has exactly one owner


def test_ragged_edge_tile_is_wider_than_the_overlap():
    for length in range(300, 700, 7):
        starts = axis_starts(length, 128, 40)
        assert starts[-1] + 128 >= length > starts[-1]
        assert length - starts[-1] > 40  # the previous tile did not reach the end
        assert all(b - a == 88 for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("size,overlap", [(256, 256), (256, 300), (256, -1), (0, 0)])
def test_bad_grid_is_refused(size, overlap):
    with pytest.raises(CsrefinerError, match="overlap|tile size"):
        plan_tiles((1000, 1000), size, overlap)


def test_manifest_round_trip_is_deterministic(tmp_path):
    m = Manifest("chipA", "chipA.tif", (3000, 2500), "uint16", 1, 1024, 128)
    m.save(tmp_path / "a.json")
    Manifest.load(tmp_path / "a.json").save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["shape"] == [3000, 2500] and data["overlap"] == 128
    assert [t["key"] for t in data["tiles"]][:2] == ["chipA-x0_y0_w1024_h1024", "chipA-x896_y0_w1024_h1024"]
    assert data["tiles"][-1]["w"] == 2500 - data["tiles"][-1]["x"]


@pytest.mark.parametrize("edit", ["overlap", "drop_tile", "move_tile", "format"])
def test_edited_manifest_is_refused(tmp_path, edit):
    Manifest("s", "s.tif", (900, 900), "uint8", 1, 400, 50).save(tmp_path / "m.json")
    data = json.loads((tmp_path / "m.json").read_text())
    if edit == "overlap":
        data["overlap"] = 400
    elif edit == "drop_tile":
        data["tiles"].pop(3)
    elif edit == "move_tile":
        data["tiles"][1]["x"] += 1
    else:
        data["format"] = "something"
    (tmp_path / "m.json").write_text(json.dumps(data))
    with pytest.raises(CsrefinerError, match="m.json"):
        Manifest.load(tmp_path / "m.json")
