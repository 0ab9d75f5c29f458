"""Classical watershed nuclei (no weights, nothing to train): a reference and a second opinion.

`csrefiner segment --model watershed` gives every run a baseline that needs no model file, and `suggest` a
second opinion when only one learned model is at hand (the demo's case). `finetune` refuses it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.models import classical
from csrefiner.models.base import Backend, LocalModel, Pretrained, Segmenter, Trainer, TrainParams
from csrefiner.models.data import grey
from csrefiner.models.options import Option

NAME = "default"


class WatershedSegmenter(Segmenter):
    def __init__(self, options: dict, stain: str):
        self.stain = stain
        self.min_distance = options["min_distance"]
        self.sigma = options["sigma"]

    def predict(self, image: np.ndarray) -> np.ndarray:
        return classical.watershed_nuclei(grey(image, self.stain), sigma=self.sigma, min_distance=self.min_distance)

    def describe(self) -> dict:
        return {
            "method": "Otsu foreground, distance-transform seeds, watershed",
            "sigma": self.sigma,
            "min_distance": self.min_distance,
        }


class WatershedBackend(Backend):
    name = "watershed"
    option_specs = (
        Option("min_distance", "int", 4, "least distance between two seeds, pixels"),
        Option("sigma", "float", 1.0, "Gaussian smoothing of the grey image before Otsu, pixels"),
    )
    requires = ("skimage",)
    default_lr = (0.0, 0.0)
    known_names = ("watershed",)

    def find_pretrained(self, spec: str) -> Pretrained:
        if spec not in (NAME, "watershed"):
            raise CsrefinerError(f"watershed has one model, '{NAME}' (no weights); got {spec!r}")
        # a classical method's "weights" are its code: a real path, so it never reads as untrained
        return Pretrained(NAME, Path(classical.__file__))

    def local_models(self) -> list[LocalModel]:
        return [LocalModel(self.name, NAME, Path(classical.__file__), "classical, no weights")]

    def cache_hint(self) -> str:
        return "nothing to place: watershed has no weights"

    def trainer(self, base: Pretrained, params: TrainParams, train: list, val: list) -> Trainer:
        raise CsrefinerError(
            "watershed is a classical method with nothing to train; fine-tune a learned "
            "backend instead (cellpose, stardist, cpsam, cellbin, cellvit)"
        )

    def load(self, source: Pretrained, params: TrainParams) -> Segmenter:
        if source.folder:
            raise CsrefinerError(f"{source.name}: watershed has no model folders")
        return WatershedSegmenter(self.option_values(params.options), params.stain)


BACKEND = WatershedBackend()
