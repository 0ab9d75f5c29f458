"""CellViT (ViT-256 or SAM encoder + U-Net decoder, HoVer-Net post-processing), in torch, no extra library.

Fine-tuning follows the published recipe: AdamW (lr 3e-4, weight decay 1e-4), the encoder frozen for the first
`freeze_epochs` epochs (25 from a pretrained model, 0 from scratch) and then trained too; focal-Tversky + Dice
on the nucleus map, MSE + MSGE on the HV maps, CE + Dice on types when there are types; flips / rot90 /
intensity augmentation, HV targets computed from the augmented labels; best checkpoint by validation F1 (the
shared loop). Input: 3 channels scaled to [-1, 1] - H&E as RGB / 255, ssDNA/DAPI as the percentile-normalised
grey image in all three channels. Images are padded to multiples of 16 and predicted in overlapping windows.

Pretrained weights are never downloaded: put published checkpoints (CellViT-256-x40.pth, CellViT-SAM-H-x40.pth,
...) into $CSREFINER_MODELS/cellvit/ (default ~/.csrefiner/models/cellvit/), or give a path.

Model folder: `cellvit/weights.pth` (the published checkpoint layout: 'model_state_dict', 'config', 'arch')
and `cellvit/config.json` (architecture, stain, post-processing and inference settings).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.models.augment import Augment, augment_pair
from csrefiner.models.base import Backend, LocalModel, Pretrained, Segmenter, Trainer, TrainParams
from csrefiner.models.card import read_model_json
from csrefiner.models.data import grey, percentile_normalize
from csrefiner.models.options import Option

CHECKPOINTS_URL = "https://github.com/TIO-IKIM/CellViT#model-checkpoints"
PUBLISHED = ("CellViT-256-x40", "CellViT-256-x20", "CellViT-SAM-H-x40", "CellViT-SAM-H-x20")
MARKER_THRESHOLDS = (0.3, 0.4, 0.5, 0.6)  # HoVer-Net's 0.4 and neighbours, chosen on validation by `finish`
POSTPROCESS = ("prob_threshold", "marker_threshold", "ksize", "min_size")
SETTINGS = (*POSTPROCESS, "window", "overlap")  # saved with the model; `--option`s given at segment time win
ENCODERS = ("vit256", "sam-b", "sam-l", "sam-h")  # csrefiner.models.cellvit.config.PRESETS (which imports torch)


def model_dir() -> Path:
    root = os.environ.get("CSREFINER_MODELS")
    return (Path(root) if root else Path.home() / ".csrefiner" / "models") / "cellvit"


# --- input and inference ------------------------------------------------------------------------------------------


def to_input(image: np.ndarray, stain: str) -> np.ndarray:
    """(H, W, 3) float32 in about [0, 1] (augmentation works here); the network sees 2 * x - 1."""
    img = np.asarray(image)
    if stain == "he" and img.ndim == 3:
        rgb = img[..., :3].astype(np.float32)
        out = rgb / 255.0 if img.dtype == np.uint8 else percentile_normalize(rgb)
        return out.astype(np.float32)
    g = percentile_normalize(grey(img, stain)).astype(np.float32)
    return np.repeat(g[..., None], 3, axis=-1)


def _starts(size: int, window: int, step: int) -> list[int]:
    if size <= window:
        return [0]
    starts = list(range(0, size - window, step))
    return starts + [size - window]


def predict_maps(net, x: np.ndarray, device, window: int, overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """Nucleus probability (H, W) and HV maps (2, H, W) of an (H, W, 3) input, windows averaged over overlaps."""
    import torch

    h, w = x.shape[:2]
    ph, pw = max(-(-h // 16) * 16, 32), max(-(-w // 16) * 16, 32)
    mode = "reflect" if ph - h < h and pw - w < w else "edge"
    x = np.pad(x, ((0, ph - h), (0, pw - w), (0, 0)), mode=mode)
    win_h, win_w = min(window, ph), min(window, pw)
    acc, weight = np.zeros((3, ph, pw), np.float32), np.zeros((ph, pw), np.float32)
    net.eval()
    with torch.no_grad():
        for y0 in _starts(ph, win_h, win_h - overlap):
            for x0 in _starts(pw, win_w, win_w - overlap):
                crop = x[y0 : y0 + win_h, x0 : x0 + win_w]
                t = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))[None].to(device) * 2 - 1
                out = net(t)
                prob = out["nuclei_binary_map"].softmax(1)[0, 1]
                maps = torch.cat([prob[None], out["hv_map"][0]]).cpu().numpy()
                acc[:, y0 : y0 + win_h, x0 : x0 + win_w] += maps
                weight[y0 : y0 + win_h, x0 : x0 + win_w] += 1
    acc /= weight
    return acc[0, :h, :w], acc[1:, :h, :w]


class CellViTSegmenter(Segmenter):
    def __init__(self, net, device, settings: dict):
        from csrefiner.models.cellvit.postprocess import PostProcess

        self.net, self.device, self.settings = net, device, settings
        self.post = PostProcess(**{k: settings[k] for k in ("prob_threshold", "marker_threshold", "ksize", "min_size")})

    def predict(self, image: np.ndarray) -> np.ndarray:
        from csrefiner.models.cellvit.postprocess import instances

        x = to_input(image, self.settings["stain"])
        prob, hv = predict_maps(self.net, x, self.device, self.settings["window"], self.settings["overlap"])
        return instances(prob, hv, self.post)

    def describe(self) -> dict:
        return {"postprocess": self.post.record(), "window": self.settings["window"]}


# --- training -----------------------------------------------------------------------------------------------------


def _crop(x: np.ndarray, labels: np.ndarray, side: int, rng: np.random.Generator | None):
    """A side x side crop (random with rng, else centred)."""
    h, w = labels.shape
    if rng is None:
        y0, x0 = (h - side) // 2, (w - side) // 2
    else:
        y0, x0 = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
    return x[y0 : y0 + side, x0 : x0 + side], labels[y0 : y0 + side, x0 : x0 + side]


def _batch(pairs: list, device):
    """(x, nucleus mask, HV maps) tensors from (input, labels) pairs; targets from the (augmented) labels."""
    import torch

    from csrefiner.models.cellvit.targets import targets

    xs, fgs, hvs = [], [], []
    for x, labels in pairs:
        fg, hv = targets(labels)
        xs.append(x.transpose(2, 0, 1) * 2 - 1)
        fgs.append(fg)
        hvs.append(hv)
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(np.stack(a))).to(device)  # noqa: E731
    return as_t(xs).float(), as_t(fgs), as_t(hvs).float()


class CellViTTrainer(Trainer):
    def __init__(
        self,
        net,
        device,
        settings: dict,
        train: list,
        val: list,
        params: TrainParams,
        freeze_epochs: int,
        crop: int = 256,
        weight_decay: float = 1e-4,
    ):
        import torch

        self.net, self.device, self.settings, self.params = net, device, settings, params
        self.freeze_epochs = freeze_epochs
        self.aug = Augment()
        stain = settings["stain"]
        self.X = [to_input(s.image, stain) for s in train]
        self.L = [s.labels for s in train]
        side = min(min(s.labels.shape) for s in train + val)
        self.side = int(min(crop, side) // 16 * 16)
        self.val = [
            _crop(to_input(s.image, stain), s.labels, min(self.side, min(s.labels.shape) // 16 * 16), None) for s in val
        ]
        self.optimizer = torch.optim.AdamW(net.parameters(), lr=3e-4, weight_decay=weight_decay)
        self.frozen = None

    def _set_frozen(self, frozen: bool) -> None:
        if frozen != self.frozen:
            self.net.set_encoder_trainable(not frozen)
            self.frozen = frozen

    def train_epoch(self, order: np.ndarray, lr: float, epoch: int) -> float:
        import torch

        from csrefiner.models.cellvit.losses import cellvit_loss

        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._set_frozen(epoch < self.freeze_epochs)
        rng = np.random.default_rng((self.params.seed, epoch))
        torch.manual_seed(self.params.seed * 100003 + epoch)
        self.net.train()
        total, n = 0.0, 0
        for k in range(0, len(order), self.params.batch_size):
            inds = order[k : k + self.params.batch_size]
            pairs = [augment_pair(*_crop(self.X[i], self.L[i], self.side, rng), rng, self.aug) for i in inds]
            x, fg, hv = _batch(pairs, self.device)
            loss, _ = cellvit_loss(self.net(x), fg, hv)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * len(inds)
            n += len(inds)
        return total / max(n, 1)

    def val_loss(self) -> float:
        import torch

        from csrefiner.models.cellvit.losses import cellvit_loss

        self.net.eval()
        losses = []
        with torch.no_grad():
            for pair in self.val:
                x, fg, hv = _batch([pair], self.device)
                losses.append(float(cellvit_loss(self.net(x), fg, hv)[0]))
        return float(np.mean(losses))

    def segmenter(self) -> Segmenter:
        return CellViTSegmenter(self.net, self.device, self.settings)

    def save(self, folder: Path) -> None:
        import torch

        (folder / "cellvit").mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        torch.save(
            {"arch": "CellViT", "config": self.net.cfg, "model_state_dict": state}, folder / "cellvit" / "weights.pth"
        )
        write_config(folder, self.net.cfg, self.settings)

    def restore(self, folder: Path) -> None:
        from csrefiner.models.cellvit.checkpoint import load_into, read

        load_into(self.net, read(folder / "cellvit" / "weights.pth")[0], str(folder))

    def finish(self, folder: Path, val: list) -> dict:
        """Pick the watershed marker threshold on the validation patches (maps predicted once, then re-cut)."""
        from csrefiner.metrics.matching import match_counts
        from csrefiner.metrics.overlap import label_overlap
        from csrefiner.models.cellvit.postprocess import PostProcess, instances

        s = self.settings
        maps = [
            predict_maps(self.net, to_input(v.image, s["stain"]), self.device, s["window"], s["overlap"]) for v in val
        ]
        scores = {}
        for t in MARKER_THRESHOLDS:
            pp = PostProcess(s["prob_threshold"], t, s["ksize"], s["min_size"])
            total = None
            for v, (prob, hv) in zip(val, maps):
                c = match_counts(label_overlap(v.labels, instances(prob, hv, pp)), 0.5)
                total = c if total is None else total + c
            scores[t] = float(total.scores()["f1"])
        # ties: the highest threshold (more markers). Merged neighbours are the usual failure of weak HV maps, and
        # HoVer-Net's per-image gradient scaling makes smaller images (tiles) merge more than validation shows
        best = max(scores, key=lambda t: (scores[t], t))
        s["marker_threshold"] = best
        write_config(folder, self.net.cfg, s)
        return {
            "thresholds": {
                "marker_threshold": best,
                "validation_f1_by_marker_threshold": {str(k): v for k, v in scores.items()},
            }
        }

    def describe(self) -> dict:
        cfg = self.net.cfg
        return {
            "network": "CellViT",
            "encoder": cfg["encoder"],
            "embed_dim": cfg["embed_dim"],
            "depth": cfg["depth"],
            "heads": cfg["heads"],
            "decoder_widths": cfg["widths"],
            "crop": self.side,
            "device": str(self.device),
            "parameters": int(sum(p.numel() for p in self.net.parameters())),
            "encoder_parameters": int(sum(p.numel() for p in self.net.encoder_parameters())),
            "freeze_epochs": self.freeze_epochs,
            "optimizer": "AdamW",
            "weight_decay": self.optimizer.param_groups[0]["weight_decay"],
            "losses": "focal-Tversky + Dice (nuclei), MSE + MSGE (HV), CE + Dice (types, when labelled)",
            "augmentation": "csrefiner augment_pair (flips, rot90, intensity jitter); HV targets from augmented labels",
        }


def write_config(folder: Path, cfg: dict, settings: dict) -> None:
    (folder / "cellvit").mkdir(parents=True, exist_ok=True)
    text = json.dumps({"model": cfg, "settings": settings}, indent=2) + "\n"
    (folder / "cellvit" / "config.json").write_text(text)


# --- backend ------------------------------------------------------------------------------------------------------


class CellViTBackend(Backend):
    name = "cellvit"
    option_specs = (
        Option(
            "encoder",
            "str",
            "vit256",
            "encoder of a new network: CellViT-256 (HIPT ViT-S/16) or SAM-B/L/H",
            scratch=True,
            choices=ENCODERS,
        ),
        Option("embed_dim", "int", None, "encoder width (default: the encoder's)", scratch=True),
        Option("depth", "int", None, "encoder blocks, >= 4 (default: the encoder's)", scratch=True),
        Option(
            "heads",
            "int",
            None,
            "attention heads (default: the encoder's; 32-wide heads for a new embed_dim)",
            scratch=True,
        ),
        Option("decoder_div", "int", 1, "decoder this many times narrower than published", scratch=True),
        Option("types", "int", 0, "nucleus type classes of the type branch", scratch=True),
        Option(
            "freeze_epochs",
            "int",
            None,
            "epochs with the encoder frozen (default: 25 from a pretrained model, 0 from scratch)",
        ),
        Option("weight_decay", "float", 1e-4, "AdamW weight decay"),
        Option("crop", "int", 256, "training crop side, px (at most the smallest patch, a multiple of 16)"),
        Option(
            "window",
            "int",
            None,
            "inference window side, px, a multiple of 16, >= 32 (default: the training "
            "crop, 256 for a pretrained model)",
        ),
        Option("overlap", "int", None, "overlap of inference windows, px (default: a quarter of the window, >= 16)"),
        Option("prob_threshold", "float", 0.5, "nucleus probability threshold"),
        Option(
            "marker_threshold",
            "float",
            0.4,
            "watershed marker threshold (fine-tuning picks it on the validation patches)",
        ),
        Option("ksize", "int", 11, "Sobel kernel size for the HV-map gradients (odd, >= 3)"),
        Option("min_size", "int", 10, "smallest nucleus kept, pixels"),
    )
    requires = ("torch",)
    default_lr = (3e-4, 3e-4)  # AdamW as published (the frozen encoder keeps fine-tuning gentle)
    known_names = PUBLISHED

    def check_sample_shape(self, shape: tuple[int, int]) -> str | None:
        if min(shape) < 32:
            return (
                f"patch {shape} is too small for CellViT (16-pixel tokens); "
                "use patches of at least 32 x 32 (256 x 256 usual)"
            )
        return None

    def find_pretrained(self, spec: str) -> Pretrained:
        from csrefiner.models.cellvit.checkpoint import read
        from csrefiner.models.cellvit.config import from_state

        path = Path(spec).expanduser()
        if not path.is_file() and "/" not in spec and not path.suffix:
            path = model_dir() / f"{spec}.pth"
            if not path.is_file():
                raise CsrefinerError(
                    f"CellViT model '{spec}' is not on this machine (nothing is downloaded at run time): put "
                    f"'{spec}.pth' ({CHECKPOINTS_URL}) into {path.parent} ($CSREFINER_MODELS/cellvit), or give its "
                    f"path; published names: {', '.join(PUBLISHED)}"
                )
        if not path.is_file():
            raise CsrefinerError(
                f"{spec}: no such CellViT checkpoint file; give a .pth file or a name like {PUBLISHED[0]}"
            )
        state, meta, _ = read(path)
        try:
            from_state(state, meta)
        except CsrefinerError as exc:
            raise CsrefinerError(f"{path}: {exc}") from exc
        return Pretrained(spec, path)

    def local_models(self) -> list[LocalModel]:
        folder = model_dir()
        return [LocalModel(self.name, p.stem, p) for p in sorted(folder.glob("*.pth"))] if folder.is_dir() else []

    def cache_hint(self) -> str:
        return (
            f"put CellViT checkpoints (e.g. CellViT-256-x40.pth from {CHECKPOINTS_URL}) into {model_dir()} "
            "($CSREFINER_MODELS/cellvit)"
        )

    def _settings(self, params: TrainParams, saved: dict | None, crop: int) -> dict:
        opts = self.option_values(params.options)
        base = saved or {
            "stain": params.stain,
            **{k: opts[k] for k in POSTPROCESS},
            "window": crop,
            "overlap": max(16, crop // 4),
        }
        out = dict(base) | {k: opts[k] for k in SETTINGS if k in opts.raw}
        if out["overlap"] >= out["window"] or out["window"] % 16 or out["window"] < 32:
            raise CsrefinerError(
                f"--option window={out['window']} overlap={out['overlap']}: window must be a multiple "
                "of 16 (>= 32) and larger than the overlap"
            )
        if out["ksize"] < 3 or out["ksize"] % 2 == 0:
            raise CsrefinerError(f"--option ksize={out['ksize']}: the Sobel size must be odd and >= 3")
        return out

    def _net(self, source: Pretrained, params: TrainParams, crop: int = 256):
        import torch

        from csrefiner.models.cellvit.checkpoint import load_into, read
        from csrefiner.models.cellvit.config import from_options, from_state
        from csrefiner.models.cellvit.decoder import CellViT
        from csrefiner.models.device import torch_device

        device = torch_device(params.device)
        torch.manual_seed(params.seed)
        saved = None
        if source.scratch:
            cfg, state = from_options(self.option_values(params.options), crop), None
        else:
            weights = source.path / "cellvit" / "weights.pth" if source.folder else source.path
            state, meta, _ = read(weights)
            cfg = from_state(state, meta)
            if source.folder:
                config = read_model_json(source.path / "cellvit" / "config.json", ("settings",), "cellvit config")
                saved = config["settings"]
        net = CellViT(cfg)
        if state is not None:
            load_into(net, state, str(source.path))
        return net.to(device), device, saved

    def trainer(self, base: Pretrained, params: TrainParams, train: list, val: list) -> Trainer:
        opts = self.option_values(params.options)
        crop = min(min(s.labels.shape) for s in train + val) // 16 * 16
        net, device, saved = self._net(base, params, min(crop, opts["crop"]))
        settings = self._settings(params, saved, crop)
        settings["stain"] = params.stain
        freeze = (0 if base.scratch else 25) if opts["freeze_epochs"] is None else opts["freeze_epochs"]
        return CellViTTrainer(net, device, settings, train, val, params, freeze, opts["crop"], opts["weight_decay"])

    def load(self, source: Pretrained, params: TrainParams) -> Segmenter:
        net, device, saved = self._net(source, params)
        return CellViTSegmenter(net, device, self._settings(params, saved, 256))


BACKEND = CellViTBackend()
