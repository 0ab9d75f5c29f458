"""Cellpose 3 (CPnet: cyto3, nuclei, cyto2, ... or from scratch), trained with cellpose's own machinery.

Training uses cellpose's flow targets (`dynamics.labels_to_flows`), its augmentation
(`transforms.random_rotate_and_resize`: rotation by any angle, flips, scaling to the model's diameter) and its
loss (`train._loss_fn_seg`), driven by csrefiner's shared loop, because `cellpose.train.train_seg` has no hook
for per-epoch validation, best-checkpoint selection or early stopping. Intensity jitter is added on top.
Input is one grey channel (ssDNA/DAPI as is; H&E as hematoxylin density), normalised by cellpose's 1-99
percentile scaling per image, at training and inference alike.

Model folder: `cellpose/weights.pt` (a cellpose 3 CPnet state dict: with the default network cellpose itself
loads it, `CellposeModel(pretrained_model="cellpose/weights.pt")`) and `cellpose/config.json`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.models.augment import Augment, intensity
from csrefiner.models.base import Backend, LocalModel, Pretrained, Segmenter, Trainer, TrainParams
from csrefiner.models.card import read_model_json
from csrefiner.models.data import grey
from csrefiner.models.options import Option

MODEL_URL = "https://www.cellpose.org/models"
# cellpose 3's file name for each built-in model (cellpose.models.model_path)
BUILTIN_FILES = {"cyto": "cytotorch_0", "cyto2": "cyto2torch_0", "nuclei": "nucleitorch_0"}
BUILTIN = (
    "cyto3",
    "nuclei",
    "cyto2",
    "cyto",
    "cyto2_cp3",
    "tissuenet_cp3",
    "livecell_cp3",
    "yeast_PhC_cp3",
    "yeast_BF_cp3",
    "bact_phase_cp3",
    "bact_fluor_cp3",
    "deepbacs_cp3",
)
DEFAULT_NBASE = (2, 32, 64, 128, 256)  # cellpose 3's CPnet; the last width must stay 256 (style vector)


def model_dir() -> Path:
    """cellpose's own model folder (what cellpose.models.MODEL_DIR resolves to)."""
    env = os.environ.get("CELLPOSE_LOCAL_MODELS_PATH")
    return Path(env) if env else Path.home() / ".cellpose" / "models"


def _load_state(path: Path) -> dict:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        raise CsrefinerError(f"{path}: not a readable cellpose model file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or "output.2.weight" not in state and "W2" not in state:
        raise CsrefinerError(f"{path}: not a cellpose network state dict; give a cellpose 3 model file")
    if "W2" in state:
        raise CsrefinerError(f"{path}: a Cellpose-SAM (cellpose 4) model; use --model cpsam for it")
    return state


def nbase_of(state: dict) -> list[int]:
    """The CPnet widths, read from the weight shapes (so any cellpose 3 network loads)."""
    widths, i = [], 0
    while f"downsample.down.res_down_{i}.proj.1.weight" in state:
        w = state[f"downsample.down.res_down_{i}.proj.1.weight"]
        widths = widths or [int(w.shape[1])]
        widths.append(int(w.shape[0]))
        i += 1
    if not widths:
        raise CsrefinerError("cellpose state dict without the CPnet encoder (downsample.down.res_down_*)")
    return widths


def build_net(nbase, diam_mean: float, device):
    from cellpose.resnet_torch import CPnet

    return CPnet(list(nbase), 3, sz=3, mkldnn=False, max_pool=True, diam_mean=float(diam_mean)).to(device)


class CellposeSegmenter(Segmenter):
    def __init__(self, net, device, config: dict):
        from cellpose.models import CellposeModel

        self.config = config
        model = CellposeModel(
            gpu=device.type == "cuda", pretrained_model=False, device=device, nchan=2, diam_mean=config["diam_mean"]
        )
        model.net, model.diam_mean, model.diam_labels = net, config["diam_mean"], config["diam_labels"]
        self.model = model

    def predict(self, image: np.ndarray) -> np.ndarray:
        img = grey(image, self.config.get("stain", "ss"))
        masks = self.model.eval(
            img,
            channels=[0, 0],
            diameter=self.config.get("diameter"),
            normalize=True,
            flow_threshold=self.config["flow_threshold"],
            cellprob_threshold=self.config["cellprob_threshold"],
        )[0]
        self.model.net.train(False)
        return np.asarray(masks).astype(np.uint32)

    def describe(self) -> dict:
        return {k: self.config[k] for k in ("flow_threshold", "cellprob_threshold", "diam_mean", "diam_labels")}


def _inputs(samples: list, stain: str, device) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """(2, H, W) normalised inputs (grey + empty nuclear channel), (3, H, W) flow targets, diameters."""
    from cellpose import dynamics, transforms, utils

    xs = []
    for s in samples:
        g = grey(s.image, stain)
        x = transforms.normalize_img(np.stack([g, np.zeros_like(g)], axis=-1).astype(np.float32))
        xs.append(np.ascontiguousarray(np.moveaxis(x, -1, 0)))
    flows = dynamics.labels_to_flows([s.labels.astype(np.int64).copy() for s in samples], device=device)
    diams = np.array([utils.diameters(s.labels.astype(np.int32))[0] for s in samples], dtype=np.float32)
    return xs, [f[1:].astype(np.float32) for f in flows], diams


class CellposeTrainer(Trainer):
    def __init__(self, net, device, config: dict, train: list, val: list, params: TrainParams):
        import torch

        self.net, self.device, self.config, self.params = net, device, config, params
        self.aug = Augment()
        self.X, self.Y, self.diams = _inputs(train, params.stain, device)
        self.diams = np.where(self.diams > 0, self.diams, config["diam_mean"])
        self.config["diam_labels"] = float(self.diams.mean())
        self.net.diam_labels.data = torch.tensor([self.config["diam_labels"]], dtype=torch.float32).to(device)
        side = min(min(x.shape[1:]) for x in self.X)
        self.bsize = int(min(224, max(64, side // 16 * 16)))
        self.optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-5)
        self._val = self._fixed_val(val)

    def _rescale(self, diams: np.ndarray) -> np.ndarray:
        return diams / self.config["diam_mean"]

    def _fixed_val(self, val: list):
        from cellpose import transforms

        xs, ys, diams = _inputs(val, self.params.stain, self.device)
        diams = np.where(diams > 0, diams, self.config["diam_mean"])
        state = np.random.get_state()
        np.random.seed(42)
        imgi, lbl = transforms.random_rotate_and_resize(
            xs,
            Y=ys,
            rescale=self._rescale(diams),
            scale_range=0.0,
            xy=(self.bsize, self.bsize),
            do_flip=False,
            rotate=False,
        )[:2]
        np.random.set_state(state)
        return imgi, lbl

    def train_epoch(self, order: np.ndarray, lr: float, epoch: int) -> float:
        import torch
        from cellpose import transforms
        from cellpose.train import _loss_fn_seg

        for group in self.optimizer.param_groups:
            group["lr"] = lr
        np.random.seed(self.params.seed * 100003 + epoch)  # cellpose's augmentation draws from np.random
        rng = np.random.default_rng((self.params.seed, epoch))
        self.net.train()
        total, n = 0.0, 0
        for k in range(0, len(order), self.params.batch_size):
            inds = order[k : k + self.params.batch_size]
            imgi, lbl = transforms.random_rotate_and_resize(
                [self.X[i] for i in inds],
                Y=[self.Y[i] for i in inds],
                rescale=self._rescale(self.diams[inds]),
                scale_range=0.5,
                xy=(self.bsize, self.bsize),
            )[:2]
            for j in range(len(imgi)):
                imgi[j, 0] = intensity(imgi[j, 0], rng, self.aug)
            y = self.net(torch.from_numpy(imgi).to(self.device))[0]
            loss = _loss_fn_seg(lbl, y, self.device)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(inds)
            n += len(inds)
        return total / max(n, 1)

    def val_loss(self) -> float:
        import torch
        from cellpose.train import _loss_fn_seg

        imgi, lbl = self._val
        self.net.eval()
        with torch.no_grad():
            loss = _loss_fn_seg(lbl, self.net(torch.from_numpy(imgi).to(self.device))[0], self.device).item()
        return float(loss)

    def segmenter(self) -> Segmenter:
        return CellposeSegmenter(self.net, self.device, self.config)

    def save(self, folder: Path) -> None:
        import torch

        (folder / "cellpose").mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), folder / "cellpose" / "weights.pt")
        (folder / "cellpose" / "config.json").write_text(json.dumps(self.config, indent=2) + "\n")

    def restore(self, folder: Path) -> None:
        self.net.load_state_dict(_load_state(folder / "cellpose" / "weights.pt"))

    def finish(self, folder: Path, val: list) -> dict:
        """Pick cellpose's cell-probability threshold on the validation patches (flow threshold stays 0.4)."""
        from csrefiner.models.training import validation_scores

        scores = {}
        for t in (-1.0, -0.5, 0.0, 0.5, 1.0):
            self.config["cellprob_threshold"] = t
            scores[t] = validation_scores(self.segmenter(), val)["f1"]
        best = max(scores, key=lambda t: (scores[t], -abs(t)))
        self.config["cellprob_threshold"] = best
        (folder / "cellpose" / "config.json").write_text(json.dumps(self.config, indent=2) + "\n")
        return {
            "thresholds": {
                "cellprob_threshold": best,
                "flow_threshold": self.config["flow_threshold"],
                "validation_f1_by_cellprob_threshold": {str(k): v for k, v in scores.items()},
            }
        }

    def describe(self) -> dict:
        return {
            "network": "CPnet",
            "nbase": self.config["nbase"],
            "bsize": self.bsize,
            "device": str(self.device),
            "parameters": int(sum(p.numel() for p in self.net.parameters())),
            "augmentation": "cellpose random_rotate_and_resize (any-angle rotation, flips, scale 0.75-1.25) "
            "+ intensity jitter",
        }


class CellposeBackend(Backend):
    name = "cellpose"
    option_specs = (
        Option("nbase", "ints", DEFAULT_NBASE, "CPnet widths; the first must be 2, the last 256", scratch=True),
        Option(
            "diam_mean",
            "float",
            None,
            "the network's object diameter, px (default: the training labels' mean diameter, so no rescaling)",
            scratch=True,
        ),
        Option(
            "diameter",
            "float",
            None,
            "object diameter in the images, px: they are rescaled to the model's (default: the model's own)",
        ),
    )
    requires = ("cellpose", "torch")
    default_lr = (5e-3, 5e-4)  # AdamW, as cellpose's train_seg (scratch); 10x lower to fine-tune
    known_names = BUILTIN

    def find_pretrained(self, spec: str) -> Pretrained:
        path = Path(spec).expanduser()
        if path.is_file():
            _load_state(path)
            return Pretrained(spec, path)
        if "/" in spec or path.suffix:
            raise CsrefinerError(
                f"{spec}: no such cellpose model file; give a cellpose 3 weights file or a name like cyto3"
            )
        file = model_dir() / BUILTIN_FILES.get(spec, spec)
        if file.is_file():
            return Pretrained(spec, file)
        known = ", ".join(BUILTIN)
        raise CsrefinerError(
            f"cellpose model '{spec}' is not on this machine (nothing is downloaded at run time): put the file "
            f"'{file.name}' ({MODEL_URL}/{file.name}) into {file.parent} (CELLPOSE_LOCAL_MODELS_PATH), or give its "
            f"path; built-in names: {known}"
        )

    def local_models(self) -> list[LocalModel]:
        folder = model_dir()
        files = {f: n for n, f in BUILTIN_FILES.items()}
        return (
            [
                LocalModel(self.name, files.get(p.name, p.name), p)
                for p in sorted(folder.glob("*"))
                if p.is_file() and not p.name.endswith((".npy", ".txt")) and not p.name.startswith("cpsam")
            ]
            if folder.is_dir()
            else []
        )  # cpsam* files are cellpose 4's (listed by --model cpsam)

    def cache_hint(self) -> str:
        return (
            f"put cellpose 3 model files (e.g. cyto3 from {MODEL_URL}/cyto3) into {model_dir()} "
            "(CELLPOSE_LOCAL_MODELS_PATH)"
        )

    def _net_and_config(self, source: Pretrained, params: TrainParams):
        from csrefiner.models.device import torch_device

        device = torch_device(params.device)
        opts = self.option_values(params.options)
        if source.folder:
            config = read_model_json(source.path / "cellpose" / "config.json", what="cellpose config")
            state = _load_state(source.path / "cellpose" / "weights.pt")
        elif source.scratch:
            nbase = list(opts["nbase"])
            if nbase[0] != 2 or nbase[-1] != 256:
                raise CsrefinerError(f"--option nbase={params.options.get('nbase')}: cellpose 3 needs 2,...,256")
            diam_mean = 30.0 if opts["diam_mean"] is None else opts["diam_mean"]  # `trainer` sets it from the data
            config, state = {"nbase": nbase, "diam_mean": diam_mean}, None
        else:
            state = _load_state(source.path)
            diam = state.get("diam_mean")
            builtin_nuclei = source.path.name == BUILTIN_FILES["nuclei"]
            config = {
                "nbase": nbase_of(state),
                "diam_mean": 17.0
                if builtin_nuclei
                else float(diam[0])
                if diam is not None and float(diam[0]) > 0
                else 30.0,
            }
            labels = state.get("diam_labels")
            config["diam_labels"] = (
                float(labels[0]) if labels is not None and float(labels[0]) > 0 else config["diam_mean"]
            )
        config.setdefault("diam_labels", config["diam_mean"])
        config.setdefault("flow_threshold", 0.4)
        config.setdefault("cellprob_threshold", 0.0)
        config["stain"] = config.get("stain", params.stain) if source.folder else params.stain
        if opts["diameter"] is not None:
            config["diameter"] = opts["diameter"]
        net = build_net(config["nbase"], config["diam_mean"], device)
        if state is not None:
            try:
                net.load_state_dict(state)
            except RuntimeError as exc:
                raise CsrefinerError(f"{source.path}: weights do not fit a CPnet {config['nbase']} ({exc})") from exc
        return net, device, config

    def trainer(self, base: Pretrained, params: TrainParams, train: list, val: list) -> Trainer:
        if base.scratch and "diam_mean" not in params.options:
            # a new network learns at the data's own scale (no resizing); cellpose's 30 px suits whole cells
            from cellpose.utils import diameters

            params.options["diam_mean"] = round(
                float(np.mean([diameters(s.labels.astype(np.int32))[0] for s in train])), 1
            )
        net, device, config = self._net_and_config(base, params)
        return CellposeTrainer(net, device, config, train, val, params)

    def load(self, source: Pretrained, params: TrainParams) -> Segmenter:
        net, device, config = self._net_and_config(source, params)
        return CellposeSegmenter(net, device, config)


BACKEND = CellposeBackend()
