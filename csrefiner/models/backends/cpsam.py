"""Cellpose-SAM (cellpose 4, "cpsam"): fine-tuned with cellpose 4's own training pieces.

cellpose 4 cannot share an environment with cellpose 3 (both are the `cellpose` package, and their weights are
incompatible), so this backend lives in its own extra / image: `pip install -c constraints-cpsam.txt -e
'.[cpsam]'`, container csrefiner/cpsam.

Training uses cellpose 4's flow targets (`dynamics.labels_to_flows`), its augmentation
(`transforms.random_rotate_and_resize`: any-angle rotation, flips, scale 0.75-1.25), its loss
(`train._loss_fn_seg`) and its optimiser settings (AdamW, weight decay 0.1, lr 1e-5 to fine-tune), driven by
csrefiner's shared loop (`train_seg` has no hook for validation F1, best checkpoint or early stopping).
Intensity jitter is added on top. Inference is cellpose 4's `CellposeModel.eval` on the network in hand.
The base model is the one the user chose (CSRefiner's script silently trains its own choice).

Networks. The only network cellpose 4 builds is `vit.CPSAM`: SAM's ViT-L image encoder (24 blocks, width 1024,
304.6M parameters) on 8x8-pixel tokens of 256x256 tiles, all blocks with global attention, and a linear
read-out to flows + cell probability. Its class hard-codes ViT-L and `CellposeModel` refuses to start without
a weights file ("training from scratch is not implemented"). For tests and experiments without pretrained
weights, `--pretrained scratch --option encoder=tiny|vit_b` (or depth=/embed_dim=/heads=/bsize=) builds the
same architecture - SAM's `ImageEncoderViT`, CPSAM's token size, global attention and read-out, CPSAM's
`forward` - with fewer/narrower blocks and random weights. Such a network is NOT Cellpose-SAM: it has none of
its pretraining; it only exercises the pipeline. `encoder=vit_l` from scratch is the real CPSAM, untrained.
`--option repeats=N` takes N random crops per patch per epoch (more steps on few patches) and `--option
rdrop=0` turns off CPSAM's layer drop (0.4; kept in config.json, so fine-tunes of such a model inherit it).

Model folder: `cpsam/weights.pt` (a cellpose 4 state dict; for the ViT-L network cellpose itself loads it:
`CellposeModel(pretrained_model="cpsam/weights.pt")`) and `cpsam/config.json` (architecture, thresholds).

Import workaround. On a CPU-only torch, PyPI's torchvision for torch 2.13 is a CUDA build whose compiled ops
cannot load; torchvision then fails at import in `_meta_registrations` (it registers fake kernels for `nms` and
`qnms` without checking that the ops exist). cellpose 4 imports torchvision only for four pure-torch affine
helpers in `transforms.py` (no compiled op), so when - and only when - that exact import error happens, we
define the two op schemas (torchvision's own signatures, no kernels) and import again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.models.augment import intensity
from csrefiner.models.backends import cellpose_common as common
from csrefiner.models.base import LocalModel, Pretrained, Trainer, TrainParams
from csrefiner.models.data import grey
from csrefiner.models.options import Option, OptionValues
from csrefiner.models.seeding import seeded

MODEL_URL = "https://huggingface.co/mouseland/cellpose-sam/resolve/main"
BUILTIN = ("cpsam_v2", "cpsam")  # cellpose 4's file names in its model folder
# cellpose 3 names that cellpose 4 would silently replace by cpsam
CP3_NAMES = (
    "cyto3",
    "cyto2",
    "cyto",
    "nuclei",
    "tissuenet_cp3",
    "livecell_cp3",
    "cyto2_cp3",
    "yeast_PhC_cp3",
    "yeast_BF_cp3",
    "bact_phase_cp3",
    "bact_fluor_cp3",
    "deepbacs_cp3",
)
# (embed_dim, depth, heads, neck width) of SAM's encoders, and a small one for CPU tests
PRESETS = {"vit_l": (1024, 24, 16, 256), "vit_b": (768, 12, 12, 256), "tiny": (96, 2, 3, 64)}
PATCH = 8  # CPSAM's token size in pixels
_TV_SCHEMAS = []  # keeps the torchvision op schemas alive (a torch.library.Library unregisters when collected)


def _import_torchvision() -> None:
    import torch

    try:
        import torchvision  # noqa: F401
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        lib = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TV_SCHEMAS.append(lib)
        import torchvision  # noqa: F401,F811


def cellpose4():
    """The cellpose package, checked to be cellpose 4 (imported through the torchvision workaround)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("cellpose")
    except PackageNotFoundError:
        found = "not installed"
    if found.split(".")[0] != "4":
        raise CsrefinerError(
            f"--model cpsam needs cellpose 4 (Cellpose-SAM); cellpose here: {found} (cellpose 3 is --model "
            "cellpose); use the cpsam environment: a separate venv with `pip install -c constraints-cpsam.txt "
            "-e '.[cpsam]'`, or the csrefiner/cpsam image"
        )
    if "cellpose" not in sys.modules:
        _import_torchvision()
    import cellpose

    return cellpose


def load_state(path: Path) -> dict:
    """A cellpose 4 state dict, with a clear error for cellpose 3, CPDINO or foreign files."""
    state = common.read_state(path, mmap=True)
    if not isinstance(state, dict):
        raise CsrefinerError(f"{path}: not a network state dict; give a cellpose 4 (Cellpose-SAM) model file")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "W2" not in state:
        if "output.2.weight" in state or any(k.startswith("downsample.") for k in state):
            raise CsrefinerError(
                f"{path}: a cellpose 3 (CPnet) model; cellpose 4 cannot load CP3 weights "
                "(they have no ViT encoder); use --model cellpose for it"
            )
        raise CsrefinerError(f"{path}: not a cellpose model state dict; give a cellpose 4 (Cellpose-SAM) model file")
    if "encoder.cls_token" in state:
        raise CsrefinerError(f"{path}: a Cellpose-DINO (cpdino) model; only Cellpose-SAM networks are supported")
    return state


def arch_of(state: dict) -> dict:
    """The network's shape, read from the weights (so any CPSAM-style state dict rebuilds exactly)."""
    w = state["encoder.patch_embed.proj.weight"]
    embed, ps = int(w.shape[0]), int(w.shape[-1])
    depth = len({k.split(".")[2] for k in state if k.startswith("encoder.blocks.")})
    grid = int(state["encoder.pos_embed"].shape[1])
    head_dim = int(state["encoder.blocks.0.attn.rel_pos_h"].shape[1])
    return {
        "embed_dim": embed,
        "depth": depth,
        "heads": embed // head_dim,
        "ps": ps,
        "bsize": ps * grid,
        "out_chans": int(state["encoder.neck.0.weight"].shape[0]),
    }


def is_cpsam(arch: dict) -> bool:
    """The real CPSAM network (cellpose's own class builds it)."""
    return (arch["embed_dim"], arch["depth"], arch["heads"], arch["out_chans"], arch["ps"], arch["bsize"]) == (
        *PRESETS["vit_l"],
        PATCH,
        256,
    )


def build_net(arch: dict, device):
    import torch

    cellpose4()
    from cellpose.vit import CPSAM, BaseModel

    if is_cpsam(arch):
        return CPSAM(dtype=torch.float32).to(device)

    class SmallCPSAM(CPSAM):
        """CPSAM's forward on a smaller SAM encoder (CPSAM.__init__ would build ViT-L first)."""

        def __init__(self):
            from functools import partial

            from segment_anything.modeling import ImageEncoderViT

            BaseModel.__init__(self, dtype=torch.float32)
            self.rdrop, self.backbone, self.nout, self.ps = 0.4, "sam_small", 3, arch["ps"]
            self.encoder = ImageEncoderViT(
                img_size=arch["bsize"],
                patch_size=arch["ps"],
                embed_dim=arch["embed_dim"],
                depth=arch["depth"],
                num_heads=arch["heads"],
                mlp_ratio=4,
                out_chans=arch["out_chans"],
                qkv_bias=True,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                use_rel_pos=True,
                window_size=0,
            )
            self.out = torch.nn.Conv2d(arch["out_chans"], 3 * self.ps**2, kernel_size=1)
            eye = torch.eye(3 * self.ps**2).reshape(3 * self.ps**2, 3, self.ps, self.ps)
            self.W2 = torch.nn.Parameter(eye, requires_grad=False)

    return SmallCPSAM().to(device)


def scratch_arch(opts: OptionValues) -> dict:
    """The network `--pretrained scratch` builds: the `encoder` preset, resized by the options given."""
    preset = dict(zip(("embed_dim", "depth", "heads", "neck"), PRESETS[opts["encoder"]]))
    size = {key: preset[key] if opts[key] is None else opts[key] for key in preset}
    arch = {
        "embed_dim": size["embed_dim"],
        "depth": size["depth"],
        "heads": size["heads"],
        "ps": PATCH,
        "bsize": opts["bsize"],
        "out_chans": size["neck"],
    }
    if arch["embed_dim"] % arch["heads"] or arch["bsize"] % (4 * PATCH) or arch["depth"] < 1:
        raise CsrefinerError(
            f"--option {opts.raw}: embed_dim must be a multiple of heads, bsize of {4 * PATCH}, depth >= 1"
        )
    return arch


def _cellpose_model(net, device, arch: dict):
    """cellpose 4's CellposeModel around a network in hand (its __init__ insists on loading a weights file)."""
    from cellpose.models import CellposeModel

    model = CellposeModel.__new__(CellposeModel)
    model.net, model.device, model.gpu, model.pretrained_model = net, device, device.type == "cuda", None
    model.backbone = "sam_vitl" if is_cpsam(arch) else "sam_small"  # eval allows bsize 256 only for sam_vitl
    return model


def _three_channels(image: np.ndarray, stain: str) -> np.ndarray:
    """(3, H, W) float32: the grey channel and two empty ones, as cellpose 4's training reshapes a grey image."""
    g = grey(image, stain)
    return np.stack([g, np.zeros_like(g), np.zeros_like(g)]).astype(np.float32)


class CpsamSegmenter(common.CellposeFamilySegmenter):
    def __init__(self, net, device, config: dict):
        super().__init__(net, config)
        self.model = _cellpose_model(net, device, config["arch"])

    def _input(self, image: np.ndarray) -> np.ndarray:
        return _three_channels(image, self.config.get("stain", "ss"))

    def _eval_args(self) -> dict:
        return {
            "channel_axis": 0,
            "batch_size": int(self.config.get("batch_size", 8)),
            "bsize": self.config["arch"]["bsize"],
        }

    def describe(self) -> dict:
        return {k: self.config[k] for k in ("flow_threshold", "cellprob_threshold")} | {
            "network": self.config["network"]
        }


def _inputs(samples: list, stain: str, device) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Normalised (3, H, W) inputs, (3, H, W) targets (cell probability, flow y, flow x), diameters."""
    from cellpose import dynamics, transforms, utils

    xs = [transforms.normalize_img(_three_channels(s.image, stain), axis=0) for s in samples]
    flows = dynamics.labels_to_flows([s.labels.astype(np.int64) for s in samples], device=device)
    diams = np.array([utils.diameters(s.labels.astype(np.int32))[0] for s in samples], dtype=np.float32)
    return [np.ascontiguousarray(x, dtype=np.float32) for x in xs], [f[1:].astype(np.float32) for f in flows], diams


class CpsamTrainer(common.CellposeFamilyTrainer):
    name = "cpsam"
    load_state = staticmethod(load_state)
    segmenter_class = CpsamSegmenter

    def __init__(self, net, device, config: dict, train: list, val: list, params: TrainParams, repeats: int = 1):
        import torch

        super().__init__(net, device, config, params)
        self.bsize = config["arch"]["bsize"]
        # random crops per patch per epoch: a 128 px tile of a larger patch is a fresh view each time
        self.repeats = max(1, repeats)
        self.X, self.Y, diams = _inputs(train, params.stain, device)
        self._set_diam_labels(float(np.maximum(diams, 5.0).mean()))  # as train_seg records it
        self.optimizer = torch.optim.AdamW(net.parameters(), lr=1e-5, weight_decay=float(config["weight_decay"]))
        self._val = self._fixed_val(val)

    def _augment(self, xs, ys, scale_range: float):
        from cellpose.transforms import random_rotate_and_resize

        return random_rotate_and_resize(
            xs,
            lbls=ys,
            rescale=np.ones(len(xs), np.float32),
            bsize=self.bsize,
            scale_range=scale_range,
            device=self.device,
        )[:2]

    def _fixed_val(self, val: list):
        xs, ys, _ = _inputs(val, self.params.stain, self.device)
        with seeded(42):  # one fixed crop/rotation per validation patch
            return self._augment(xs, ys, 0.0)

    def _batch(self, inds: np.ndarray, rng: np.random.Generator) -> tuple:
        import torch

        imgi, lbl = self._augment([self.X[i] for i in inds], [self.Y[i] for i in inds], 0.5)
        for j in range(len(imgi)):
            jit = intensity(imgi[j, 0].cpu().numpy(), rng, self.aug)
            imgi[j, 0] = torch.from_numpy(jit).to(self.device)
        return imgi, lbl

    def train_epoch(self, order: np.ndarray, lr: float, epoch: int) -> float:
        import torch

        torch.manual_seed(self.params.seed * 100003 + epoch)  # CPSAM's random layer drop
        return super().train_epoch(np.tile(order, self.repeats), lr, epoch)

    def describe(self) -> dict:
        return {
            "network": self.config["network"],
            **self.config["arch"],
            **self._size(),
            "augmentation": "cellpose 4 random_rotate_and_resize (any-angle rotation, flips, scale 0.75-1.25) "
            "+ intensity jitter",
        }


class CpsamBackend(common.CellposeFamilyBackend):
    name = "cpsam"
    option_specs = (
        Option(
            "encoder",
            "str",
            "vit_l",
            "SAM encoder preset: vit_l is CPSAM's own (untrained from scratch); "
            "vit_b and tiny are smaller, for tests (not Cellpose-SAM)",
            scratch=True,
            choices=tuple(PRESETS),
        ),
        Option("embed_dim", "int", None, "encoder width (default: the preset's)", scratch=True),
        Option("depth", "int", None, "encoder blocks (default: the preset's)", scratch=True),
        Option("heads", "int", None, "attention heads (default: the preset's)", scratch=True),
        Option("neck", "int", None, "encoder output channels (default: the preset's)", scratch=True),
        Option("bsize", "int", 256, f"tile side, px, a multiple of {4 * PATCH}", scratch=True),
        Option(
            "rdrop",
            "float",
            None,
            "CPSAM's layer drop while training (default: the base model's, 0.4; kept in the model folder)",
        ),
        Option("repeats", "int", 1, "random crops per patch per epoch"),
        Option("weight_decay", "float", 0.1, "AdamW weight decay (default: the base model folder's, else 0.1)"),
        Option(
            "diameter", "float", None, "object diameter in the images, px (default: none, cellpose 4 does not rescale)"
        ),
        Option("batch_size", "int", None, "tiles per batch at segmentation (default: 8)"),
        Option("bfloat16", "int", 1, "1: bfloat16 inference on a GPU (cellpose 4's default); 0: float32"),
    )
    requires = ("cellpose", "torch", "segment_anything")
    default_lr = (3e-4, 1e-5)  # scratch (small test networks); fine-tune: cellpose 4's train_seg default
    known_names = BUILTIN
    load_state = staticmethod(load_state)
    segmenter_class = CpsamSegmenter

    def check_installed(self) -> None:
        """cellpose 4 first (the usual mistake is running in the cellpose 3 environment), then the rest."""
        import importlib.util

        cellpose4()
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise CsrefinerError(
                f"backend 'cpsam' needs {', '.join(missing)}, not installed here; in the cpsam "
                "environment run `pip install -c constraints-cpsam.txt -e '.[cpsam]'`"
            )

    def find_pretrained(self, spec: str) -> Pretrained:
        path = Path(spec).expanduser()
        if path.is_file():
            load_state(path)
            return Pretrained(spec, path)
        if path.is_dir():
            raise CsrefinerError(
                f"{spec}: a folder without model.json; give a csrefiner cpsam model folder or a cellpose 4 weights file"
            )
        if spec in CP3_NAMES:
            raise CsrefinerError(
                f"'{spec}' is a cellpose 3 (CPnet) model, which cellpose 4 cannot load (it would silently use cpsam "
                f"instead); use --model cellpose --pretrained {spec}, or a Cellpose-SAM name: {', '.join(BUILTIN)}"
            )
        if "/" in spec or path.suffix or spec not in BUILTIN:
            raise CsrefinerError(
                f"{spec}: no such cellpose 4 model file or name (cellpose would fall back to downloading cpsam); "
                f"give a cellpose 4 weights file, a csrefiner cpsam model folder, or one of {', '.join(BUILTIN)}"
            )
        file = common.model_dir() / spec
        if file.is_file():
            load_state(file)
            return Pretrained(spec, file)
        raise common.not_on_this_machine(f"Cellpose-SAM model '{spec}'", file, MODEL_URL)

    def local_models(self) -> list[LocalModel]:
        folder = common.model_dir()
        return [
            LocalModel(self.name, n, folder / n, "Cellpose-SAM (cellpose 4)") for n in BUILTIN if (folder / n).is_file()
        ]

    def cache_hint(self) -> str:
        return (
            f"put Cellpose-SAM files (cpsam_v2 or cpsam from {MODEL_URL}/) into {common.model_dir()} "
            "(CELLPOSE_LOCAL_MODELS_PATH)"
        )

    def _scratch_config(self, opts: OptionValues, params: TrainParams) -> dict:
        return {"arch": scratch_arch(opts)}

    def _file_config(self, source: Pretrained, state: dict) -> dict:
        return {}  # the architecture is read from the weights (`_complete`), the rest defaults

    def _complete(self, config: dict, state: dict | None) -> None:
        if state is not None:
            config["arch"] = arch_of(state)
        config["network"] = (
            "CPSAM (ViT-L)"
            if is_cpsam(config["arch"])
            else "CPSAM-style ViT, csrefiner-sized (not pretrained Cellpose-SAM)"
        )

    def _network(self, config: dict, opts: OptionValues, params: TrainParams, device, fresh: bool):
        config["weight_decay"] = float(opts.over(config, "weight_decay"))
        for key in ("diameter", "batch_size"):
            if opts[key] is not None:
                config[key] = opts[key]
        if fresh:
            __import__("torch").manual_seed(params.seed)  # a reproducible random initialisation
        net = build_net(config["arch"], device)
        rdrop = opts.over(config, "rdrop")  # CPSAM's layer drop (0.4); kept by fine-tunes
        if rdrop is not None:  # a 2-block network learns faster without it
            net.rdrop = config["rdrop"] = float(rdrop)
        return net

    def _network_name(self, config: dict) -> str:
        return f"the network {config['arch']}"

    def _ready(self, net, opts: OptionValues, device, for_training: bool) -> None:
        if not for_training and device.type == "cuda" and opts["bfloat16"] != 0:
            net.dtype = __import__("torch").bfloat16  # cellpose 4's default on GPU; on CPU bfloat16 is ~14x slower
        net.train(False)

    def trainer(self, base: Pretrained, params: TrainParams, train: list, val: list) -> Trainer:
        net, device, config = self._net_and_config(base, params, for_training=True)
        return CpsamTrainer(net, device, config, train, val, params, self.option_values(params.options)["repeats"])


BACKEND = CpsamBackend()
