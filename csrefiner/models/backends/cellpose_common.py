"""What the cellpose 3 (`cellpose.py`) and cellpose 4 (`cpsam.py`) backends share: the model folder layout
(`<name>/weights.pt`, `<name>/config.json`), cellpose's local model folder, the training glue around cellpose's
loss, the choice of the cell-probability threshold, and loading weights and config for training or segmenting.

The two backends never run in one environment (both are the `cellpose` package), so this module imports
nothing from cellpose at import time; each subclass says what differs: inputs, augmentation, network, eval.
"""

from __future__ import annotations

import json
import logging
import os
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.models.augment import Augment
from csrefiner.models.base import Backend, Pretrained, Segmenter, Trainer, TrainParams
from csrefiner.models.card import read_model_json

log = logging.getLogger(__name__)
CELLPROB_THRESHOLDS = (-1.0, -0.5, 0.0, 0.5, 1.0)  # tried on the validation patches by `finish`


def model_dir() -> Path:
    """cellpose's own model folder (what cellpose.models.MODEL_DIR resolves to)."""
    env = os.environ.get("CELLPOSE_LOCAL_MODELS_PATH")
    return Path(env) if env else Path.home() / ".cellpose" / "models"


def read_state(path: Path, **load_args) -> object:
    """torch.load of a weights file, with one readable error for any damaged or foreign file."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, **load_args)
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        raise CsrefinerError(f"{path}: not a readable cellpose model file ({type(exc).__name__}: {exc})") from exc


def not_on_this_machine(what: str, file: Path, url: str, tail: str = "") -> CsrefinerError:
    return CsrefinerError(
        f"{what} is not on this machine (nothing is downloaded at run time): put the file '{file.name}' "
        f"({url}/{file.name}) into {file.parent} (CELLPOSE_LOCAL_MODELS_PATH), or give its path{tail}"
    )


def write_config(folder: Path, name: str, config: dict) -> None:
    (folder / name / "config.json").write_text(json.dumps(config, indent=2) + "\n")


class CellposeFamilySegmenter(Segmenter):
    """cellpose's `CellposeModel.eval` around the network in hand (`self.model`, set by the subclass)."""

    def __init__(self, net, config: dict):
        self.net, self.config = net, config

    @abstractmethod
    def _input(self, image: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _eval_args(self) -> dict:
        """The keyword arguments of `eval` that differ between cellpose 3 and 4."""

    def predict(self, image: np.ndarray) -> np.ndarray:
        was_training = self.net.training
        masks = self.model.eval(
            self._input(image),
            normalize=True,
            diameter=self.config.get("diameter"),
            flow_threshold=self.config["flow_threshold"],
            cellprob_threshold=self.config["cellprob_threshold"],
            **self._eval_args(),
        )[0]
        self.net.train(was_training)
        return np.asarray(masks).astype(np.uint32)


class CellposeFamilyTrainer(Trainer):
    """cellpose's loss (`train._loss_fn_seg`) and optimiser steps behind the shared loop; the subclass makes the
    augmented batches and the fixed validation batch (`self._val`: network input tensor, flow targets)."""

    name: ClassVar[str]  # the backend, and its folder in a model folder
    load_state: ClassVar[Callable[[Path], dict]]
    segmenter_class: ClassVar[type[Segmenter]]

    def __init__(self, net, device, config: dict, params: TrainParams):
        self.net, self.device, self.config, self.params = net, device, config, params
        self.aug = Augment()

    @abstractmethod
    def _batch(self, inds: np.ndarray, rng: np.random.Generator) -> tuple:
        """(network input tensor, flow targets) for training samples `inds`, augmented."""

    def _set_diam_labels(self, diam_labels: float) -> None:
        import torch

        self.config["diam_labels"] = diam_labels
        self.net.diam_labels.data = torch.tensor([diam_labels], dtype=torch.float32).to(self.device)

    def _loss(self, x, lbl):
        from cellpose.train import _loss_fn_seg

        return _loss_fn_seg(lbl, self.net(x)[0], self.device)

    def train_epoch(self, order: np.ndarray, lr: float, epoch: int) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        np.random.seed(self.params.seed * 100003 + epoch)  # cellpose's augmentation draws from np.random
        rng = np.random.default_rng((self.params.seed, epoch))
        self.net.train()
        total, n = 0.0, 0
        for k in range(0, len(order), self.params.batch_size):
            inds = order[k : k + self.params.batch_size]
            loss = self._loss(*self._batch(inds, rng))
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(inds)
            n += len(inds)
        return total / max(n, 1)

    def val_loss(self) -> float:
        import torch

        was_training = self.net.training
        self.net.eval()
        with torch.no_grad():
            loss = self._loss(*self._val).item()
        self.net.train(was_training)
        return float(loss)

    def segmenter(self) -> Segmenter:
        return self.segmenter_class(self.net, self.device, self.config)

    def save(self, folder: Path) -> None:
        import torch

        (folder / self.name).mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), folder / self.name / "weights.pt")
        write_config(folder, self.name, self.config)

    def restore(self, folder: Path) -> None:
        self.net.load_state_dict(self.load_state(folder / self.name / "weights.pt"), strict=True)

    def finish(self, folder: Path, val: list) -> dict:
        """Pick cellpose's cell-probability threshold on the validation patches (flow threshold stays 0.4)."""
        from csrefiner.models.training import validation_scores

        scores = {}
        for t in CELLPROB_THRESHOLDS:
            self.config["cellprob_threshold"] = t
            scores[t] = validation_scores(self.segmenter(), val)["f1"]
        best = max(scores, key=lambda t: (scores[t], -abs(t)))
        self.config["cellprob_threshold"] = best
        log.info("cell-probability threshold %s (validation F1 %.3f)", best, scores[best])
        write_config(folder, self.name, self.config)
        return {
            "thresholds": {
                "cellprob_threshold": best,
                "flow_threshold": self.config["flow_threshold"],
                "validation_f1_by_cellprob_threshold": {str(k): v for k, v in scores.items()},
            }
        }

    def _size(self) -> dict:
        return {"device": str(self.device), "parameters": int(sum(p.numel() for p in self.net.parameters()))}


class CellposeFamilyBackend(Backend):
    """Weights and config from a csrefiner model folder, a cellpose weights file, or nothing (scratch), then the
    settings every cellpose model has (thresholds, stain) and the network with its weights."""

    segmenter_class: ClassVar[type[Segmenter]]
    load_state: ClassVar[Callable[[Path], dict]]

    @abstractmethod
    def _scratch_config(self, opts, params: TrainParams) -> dict:
        """The config of a new network (`--pretrained scratch`), from the architecture options."""

    @abstractmethod
    def _file_config(self, source: Pretrained, state: dict) -> dict:
        """The config of a cellpose weights file, read from its state dict."""

    def _complete(self, config: dict, state: dict | None) -> None:
        """Settings of the family read from the weights or defaulted, before the common ones (their order in
        config.json)."""

    @abstractmethod
    def _network(self, config: dict, opts, params: TrainParams, device, fresh: bool):
        """The network for `config`, random weights (`fresh`: they stay) or about to receive a state dict."""

    @abstractmethod
    def _network_name(self, config: dict) -> str:
        """The network in words, for the error when weights do not fit it."""

    def _ready(self, net, opts, device, for_training: bool) -> None:
        """Last settings once the weights are in (precision, mode)."""

    def _config_and_state(self, source: Pretrained, opts, params: TrainParams) -> tuple[dict, dict | None]:
        if source.folder:
            folder = source.path / self.name
            config = read_model_json(folder / "config.json", what=f"{self.name} config")
            return config, self.load_state(folder / "weights.pt")
        if source.scratch:
            return self._scratch_config(opts, params), None
        state = self.load_state(source.path)
        return self._file_config(source, state), state

    def _net_and_config(self, source: Pretrained, params: TrainParams, for_training: bool):
        from csrefiner.models.device import torch_device

        device = torch_device(params.device)
        opts = self.option_values(params.options)
        config, state = self._config_and_state(source, opts, params)
        self._complete(config, state)
        config.setdefault("flow_threshold", 0.4)
        config.setdefault("cellprob_threshold", 0.0)
        config["stain"] = config.get("stain", params.stain) if source.folder else params.stain
        net = self._network(config, opts, params, device, fresh=state is None)
        if state is not None:
            fit_weights(net, state, source.path, self._network_name(config))
        self._ready(net, opts, device, for_training)
        return net, device, config

    def load(self, source: Pretrained, params: TrainParams) -> Segmenter:
        net, device, config = self._net_and_config(source, params, for_training=False)
        return self.segmenter_class(net, device, config)


def fit_weights(net, state: dict, path: Path, network: str) -> None:
    """Load `state` into `net` strictly (cellpose's own load_model is not), or say which file does not fit."""
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CsrefinerError(f"{path}: weights do not fit {network} ({exc})") from exc
