"""The one small interface every segmentation model family implements.

A backend (one file in `csrefiner/models/backends/`) knows how to
- find pretrained weights on this machine, never on the network (`resolve_pretrained`, `local_models`),
- build a `Trainer` from a base model (or from scratch) for the shared training loop (`trainer`),
- load a model folder or a pretrained name as a `Segmenter` that turns an image into uint32 instances (`load`).

Everything else - data checks, the seeded split, augmentation, learning-rate schedule, validation, best
checkpoint, early stopping, the model card, tiling and writing masks - is shared (`csrefiner/models/*.py`).
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.models.options import Option, OptionValues, scratch_given
from csrefiner.models.options import parse as parse_options
from csrefiner.models.registry import BACKENDS, BASE, Entry


@dataclass(frozen=True)
class Pretrained:
    """A model as found locally: `name` as the user gave it, `path` to its weights (None = from scratch).

    `folder` is True for a csrefiner model folder (written by `finetune`, described by its model.json);
    otherwise `path` is the library's own weights (a cellpose file, a StarDist folder, a .hdf5 ...).
    """

    name: str
    path: Path | None = None
    folder: bool = False

    @property
    def scratch(self) -> bool:
        return self.path is None


@dataclass(frozen=True)
class LocalModel:
    """One entry of `csrefiner models list`."""

    backend: str
    name: str
    path: Path
    note: str = ""


@dataclass
class TrainParams:
    epochs: int = 100
    lr: float | None = None  # None: the backend's default for scratch / fine-tune
    batch_size: int = 8
    seed: int = 0
    patience: int = 10  # evaluations without improvement before stopping
    eval_every: int = 5  # epochs between validation F1 evaluations
    stain: str = "ss"  # ss (ssDNA/DAPI, bright nuclei) or he (H&E, colour)
    device: str = "cpu"
    options: dict = field(default_factory=dict)  # backend-specific knobs (recorded in the model card)


class Segmenter(ABC):
    """A loaded model: image in, uint32 instance labels out (same height and width)."""

    @abstractmethod
    def predict(self, image: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict:
        return {}


class Trainer(ABC):
    """What the shared training loop (`csrefiner.models.training.fit`) needs from a backend."""

    @abstractmethod
    def train_epoch(self, order: np.ndarray, lr: float, epoch: int) -> float:
        """Train one epoch on training samples `order` (indices, may repeat) at learning rate `lr`; mean loss."""

    @abstractmethod
    def val_loss(self) -> float | None:
        """Loss on the validation samples (fixed patches, no augmentation), or None when not defined."""

    @abstractmethod
    def segmenter(self) -> Segmenter:
        """The model as it is now, for validation F1."""

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write weights and the backend's config into `folder` (loadable by `Backend.load`)."""

    @abstractmethod
    def restore(self, folder: Path) -> None:
        """Load weights written by `save` back into the trainer (to finish on the best checkpoint)."""

    def finish(self, folder: Path, val: list) -> dict:
        """Last touches on the saved best model (e.g. StarDist's threshold optimisation); card extras."""
        return {}

    def describe(self) -> dict:
        """Architecture / parameter count for the model card."""
        return {}


class Backend(ABC):
    """A model family. Its row in `csrefiner/models/registry.py` holds what lies outside its code (pip extra,
    image, default pretrained model); `extra` and `default_pretrained` read it."""

    name: ClassVar[str]  # the `--model` value, its key in the registry
    requires: ClassVar[tuple[str, ...]]  # importable modules the backend needs
    default_lr: ClassVar[tuple[float, float]]  # (from scratch, fine-tune)
    known_names: ClassVar[tuple[str, ...]] = ()  # pretrained names this backend answers to
    option_specs: ClassVar[
        tuple[Option, ...]
    ] = ()  # the `--option KEY=VALUE` knobs it reads (csrefiner.models.options)

    @property
    def entry(self) -> Entry:
        return BACKENDS[self.name]

    @property
    def extra(self) -> str:
        """The pip extra that installs `requires`."""
        return self.entry.extra

    @property
    def default_pretrained(self) -> str:
        return self.entry.default_pretrained

    def check_installed(self) -> None:
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            target = "." if self.extra == BASE else f"'.[{self.extra}]'"
            raise CsrefinerError(
                f"backend '{self.name}' needs {', '.join(missing)}, which is not installed here; "
                f"install it with `pip install -c constraints.txt -e {target}` or use the "
                f"csrefiner/{self.entry.image} container image"
            )

    def check_options(self, options: dict) -> None:
        """Unknown keys and values of the wrong type are refused before any work (a misspelt --option would be
        ignored silently, and recorded in the model card as if it applied)."""
        self.option_values(options)

    def option_values(self, options: dict) -> OptionValues:
        """Every declared option, typed: as given in `options` (`--option` strings), else its default."""
        return parse_options(self.name, self.option_specs, options)

    def check_scratch_options(self, options: dict, base: Pretrained) -> None:
        """Refuse architecture options (scratch-only) when the architecture comes from `base`."""
        given = scratch_given(self.option_specs, options)
        if given and not base.scratch:
            raise CsrefinerError(
                f"--option {', '.join(given)}: the architecture comes from the base model "
                f"{base.name}; these options only apply with --pretrained scratch"
            )

    def resolve(self, spec: str) -> Pretrained:
        """'scratch', a csrefiner model folder of this backend, or (`find_pretrained`) a library name or path."""
        from csrefiner.models.card import CARD, read_card

        if spec == "scratch":
            return Pretrained("scratch")
        path = Path(spec).expanduser()
        if (path / CARD).is_file():
            card = read_card(path)
            if card["backend"] != self.name:
                raise CsrefinerError(
                    f"{path}: this is a '{card['backend']}' model, not a '{self.name}' one; "
                    f"use --model {card['backend']} or a {self.name} model"
                )
            return Pretrained(str(spec), path, folder=True)
        return self.find_pretrained(spec)

    @abstractmethod
    def find_pretrained(self, spec: str) -> Pretrained:
        """A library name (local cache only) or path -> weights. Errors say which file to place where."""

    @abstractmethod
    def local_models(self) -> list[LocalModel]:
        """Pretrained models available on this machine without a download."""

    @abstractmethod
    def cache_hint(self) -> str:
        """Where this backend's pretrained weights go on this machine (for messages)."""

    @abstractmethod
    def trainer(self, base: Pretrained, params: TrainParams, train: list, val: list) -> Trainer:
        """A trainer initialised from `base` (or random weights) for these samples (`csrefiner.models.data.Sample`)."""

    @abstractmethod
    def load(self, source: Pretrained, params: TrainParams) -> Segmenter:
        """A csrefiner model folder (written by `Trainer.save`) or a pretrained model, ready to predict.

        For a folder, settings saved with it (stain, thresholds) win over `params`."""

    def check_sample_shape(self, shape: tuple[int, int]) -> str | None:
        """Why a training patch of this size cannot be used, or None."""
        return None
