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

from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.models.augment import intensity
from csrefiner.models.backends import cellpose_common as common
from csrefiner.models.base import LocalModel, Pretrained, Trainer, TrainParams
from csrefiner.models.data import grey
from csrefiner.models.options import Option
from csrefiner.models.seeding import seeded

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


def _load_state(path: Path) -> dict:
    state = common.read_state(path)
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


class CellposeSegmenter(common.CellposeFamilySegmenter):
    def __init__(self, net, device, config: dict):
        from cellpose.models import CellposeModel

        super().__init__(net, config)
        model = CellposeModel(
            gpu=device.type == "cuda", pretrained_model=False, device=device, nchan=2, diam_mean=config["diam_mean"]
        )
        model.net, model.diam_mean, model.diam_labels = net, config["diam_mean"], config["diam_labels"]
        self.model = model

    def _input(self, image: np.ndarray) -> np.ndarray:
        return grey(image, self.config.get("stain", "ss"))

    def _eval_args(self) -> dict:
        return {"channels": [0, 0]}

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


class CellposeTrainer(common.CellposeFamilyTrainer):
    name = "cellpose"
    load_state = staticmethod(_load_state)
    segmenter_class = CellposeSegmenter

    def __init__(self, net, device, config: dict, train: list, val: list, params: TrainParams):
        import torch

        super().__init__(net, device, config, params)
        self.X, self.Y, self.diams = _inputs(train, params.stain, device)
        self.diams = np.where(self.diams > 0, self.diams, config["diam_mean"])
        self._set_diam_labels(float(self.diams.mean()))
        side = min(min(x.shape[1:]) for x in self.X)
        self.bsize = int(min(224, max(64, side // 16 * 16)))
        self.optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-5)
        self._val = self._fixed_val(val)

    def _rescale(self, diams: np.ndarray) -> np.ndarray:
        return diams / self.config["diam_mean"]

    def _fixed_val(self, val: list):
        import torch
        from cellpose import transforms

        xs, ys, diams = _inputs(val, self.params.stain, self.device)
        diams = np.where(diams > 0, diams, self.config["diam_mean"])
        with seeded(42):
            imgi, lbl = transforms.random_rotate_and_resize(
                xs,
                Y=ys,
                rescale=self._rescale(diams),
                scale_range=0.0,
                xy=(self.bsize, self.bsize),
                do_flip=False,
                rotate=False,
            )[:2]
        return torch.from_numpy(imgi).to(self.device), lbl

    def _batch(self, inds: np.ndarray, rng: np.random.Generator) -> tuple:
        import torch
        from cellpose import transforms

        imgi, lbl = transforms.random_rotate_and_resize(
            [self.X[i] for i in inds],
            Y=[self.Y[i] for i in inds],
            rescale=self._rescale(self.diams[inds]),
            scale_range=0.5,
            xy=(self.bsize, self.bsize),
        )[:2]
        for j in range(len(imgi)):
            imgi[j, 0] = intensity(imgi[j, 0], rng, self.aug)
        return torch.from_numpy(imgi).to(self.device), lbl

    def describe(self) -> dict:
        return {
            "network": "CPnet",
            "nbase": self.config["nbase"],
            "bsize": self.bsize,
            **self._size(),
            "augmentation": "cellpose random_rotate_and_resize (any-angle rotation, flips, scale 0.75-1.25) "
            "+ intensity jitter",
        }


class CellposeBackend(common.CellposeFamilyBackend):
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
    load_state = staticmethod(_load_state)
    segmenter_class = CellposeSegmenter

    def find_pretrained(self, spec: str) -> Pretrained:
        path = Path(spec).expanduser()
        if path.is_file():
            _load_state(path)
            return Pretrained(spec, path)
        if "/" in spec or path.suffix:
            raise CsrefinerError(
                f"{spec}: no such cellpose model file; give a cellpose 3 weights file or a name like cyto3"
            )
        file = common.model_dir() / BUILTIN_FILES.get(spec, spec)
        if file.is_file():
            return Pretrained(spec, file)
        raise common.not_on_this_machine(
            f"cellpose model '{spec}'", file, MODEL_URL, f"; built-in names: {', '.join(BUILTIN)}"
        )

    def local_models(self) -> list[LocalModel]:
        folder = common.model_dir()
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
            f"put cellpose 3 model files (e.g. cyto3 from {MODEL_URL}/cyto3) into {common.model_dir()} "
            "(CELLPOSE_LOCAL_MODELS_PATH)"
        )

    def _scratch_config(self, opts, params: TrainParams) -> dict:
        nbase = list(opts["nbase"])
        if nbase[0] != 2 or nbase[-1] != 256:
            raise CsrefinerError(f"--option nbase={params.options.get('nbase')}: cellpose 3 needs 2,...,256")
        diam_mean = 30.0 if opts["diam_mean"] is None else opts["diam_mean"]  # `trainer` sets it from the data
        return {"nbase": nbase, "diam_mean": diam_mean}

    def _file_config(self, source: Pretrained, state: dict) -> dict:
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
        config["diam_labels"] = float(labels[0]) if labels is not None and float(labels[0]) > 0 else config["diam_mean"]
        return config

    def _complete(self, config: dict, state: dict | None) -> None:
        config.setdefault("diam_labels", config["diam_mean"])

    def _network(self, config: dict, opts, params: TrainParams, device, fresh: bool):
        if opts["diameter"] is not None:
            config["diameter"] = opts["diameter"]
        return build_net(config["nbase"], config["diam_mean"], device)

    def _network_name(self, config: dict) -> str:
        return f"a CPnet {config['nbase']}"

    def trainer(self, base: Pretrained, params: TrainParams, train: list, val: list) -> Trainer:
        if base.scratch and "diam_mean" not in params.options:
            # a new network learns at the data's own scale (no resizing); cellpose's 30 px suits whole cells
            from cellpose.utils import diameters

            params.options["diam_mean"] = round(
                float(np.mean([diameters(s.labels.astype(np.int32))[0] for s in train])), 1
            )
        net, device, config = self._net_and_config(base, params, for_training=True)
        return CellposeTrainer(net, device, config, train, val, params)


BACKEND = CellposeBackend()
