"""CellBin (STOmics SAW's cell segmentation): BCDU-Net foreground map -> seeded watershed -> uint32 instances.

The network (`csrefiner/models/cellbin/net.py`) loads the official weights by layer name:
`cellseg_bcdu_SHDI_221008_tf.hdf5` (ssDNA/DAPI, 1 input channel) and `cellseg_bcdu_H_240823_tf.hdf5` (H&E,
3 channels), from a path or from `$CSREFINER_MODELS/cellbin/` (default `~/.csrefiner/models/cellbin/`); nothing
is downloaded.

What differs from CSRefiner's CellBin fine-tuning (also in docs/backends.md, CellBin):
- Preprocessing, identical at training and inference, per image given to the model (one training patch, one
  segmented patch or tile), after CellBin's own (cellbin2 `CellSegPreprocess`): grey channel (H&E for the
  1-channel model: inverted grey) -> clip at the 99.9th percentile of non-zero pixels -> scale to [0, 1] ->
  CLAHE (kernel 128) -> scale to [0, 1]; 3-channel (H&E) model: CLAHE on the RGB image -> [0, 1].
- Training: csrefiner's augmentation (`augment_pair`: flips, rot90, intensity), a random square crop of `patch`
  pixels per sample, batches of real samples only (the last may be smaller), the shared loop's seeded order,
  LR schedule, best checkpoint and early stopping. Loss: weighted binary cross-entropy + soft Dice.
- Target (`--option target=`): `border` (default) is the foreground with the 1-pixel rims where two nuclei
  touch set to background and weighted `border_weight` (5) times, so touching nuclei come out separated;
  `fg` is CellBin's plain foreground.
- Output: instances, never a binary mask: probability > threshold -> Euclidean distance -> h-maxima seeds ->
  watershed inside the foreground -> separation rims given back to their neighbours -> small objects dropped.
  `finish` picks threshold and h on the validation patches.
- Images are predicted in windows of `patch` pixels (256 for the official model) that overlap by 2 x
  patch/8, padded by reflection at the image border; each window's centre is kept, so any size works (an
  image no larger than one window is reflection-padded to it and predicted once).

Model folder: `cellbin/weights.hdf5` (legacy Keras layout, by layer name, as the official files) and
`cellbin/config.json`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from csrefiner.errors import CsrefinerError
from csrefiner.models.augment import Augment, augment_pair
from csrefiner.models.base import Backend, LocalModel, Pretrained, Segmenter, Trainer, TrainParams
from csrefiner.models.card import read_model_json
from csrefiner.models.data import grey
from csrefiner.models.options import Option

log = logging.getLogger(__name__)

OFFICIAL = {  # file -> stain it was trained for (channels are read from the file)
    "cellseg_bcdu_SHDI_221008_tf.hdf5": "ss",
    "cellseg_bcdu_H_240823_tf.hdf5": "he",
}
WEIGHTS_URL = "https://github.com/STOmics/CSRefiner"  # its README (section Cellbin) links the official files
OPTIONS = (  # --option KEY=VALUE; all but `channels` have a default, and the defaults open every new config
    Option("patch", "int", 256, "training crop and inference window side, px (a multiple of 8)"),
    Option("base", "int", 64, "filters of the first block (the network's width)", scratch=True),
    Option("dropout", "float", 0.5, "dropout of the densely connected blocks"),
    Option(
        "target",
        "str",
        "border",
        "border: touching rims are background, weighted border_weight times, so "
        "touching nuclei come out separated; fg: CellBin's plain foreground",
        choices=("border", "fg"),
    ),
    Option("border_weight", "float", 5.0, "loss weight of the touching rims (target=border)"),
    Option("dice", "float", 1.0, "weight of the soft Dice loss next to binary cross-entropy"),
    Option("clahe", "int", 1, "1: CLAHE in the preprocessing, 0: none"),
    Option(
        "threshold", "float", 0.5, "foreground probability threshold (fine-tuning picks it on the validation patches)"
    ),
    Option("h", "float", 2.0, "h-maxima depth of the watershed seeds (fine-tuning picks it)"),
    Option("min_size", "int", 16, "smallest nucleus kept, pixels"),
    Option(
        "channels", "int", None, "input channels of a new network (default: 3 for --stain he, else 1)", scratch=True
    ),
)
DEFAULTS = {o.name: o.default for o in OPTIONS if o.default is not None}


def model_dir() -> Path:
    root = os.environ.get("CSREFINER_MODELS")
    return (Path(root) if root else Path.home() / ".csrefiner" / "models") / "cellbin"


# ---- preprocessing (the same at training and inference) -------------------------------------------------------


def _unit(img: np.ndarray) -> np.ndarray:
    lo, hi = float(img.min()), float(img.max())
    return np.zeros_like(img, dtype=np.float32) if hi - lo < 1e-8 else ((img - lo) / (hi - lo)).astype(np.float32)


def preprocess(image: np.ndarray, stain: str, channels: int, clahe: bool) -> np.ndarray:
    """(H, W, channels) float32 in [0, 1], after CellBin's preprocessing (see the module docstring)."""
    from skimage.exposure import equalize_adapthist

    img = np.asarray(image)
    if channels == 3:
        rgb = np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img[..., :3]
        rgb = _unit(rgb.astype(np.float32))
        return _unit(equalize_adapthist(rgb, kernel_size=128)) if clahe else rgb
    g = grey(img, "ss")
    if stain == "he" and img.ndim == 3:
        g = g.max() - g  # inverted grey: nuclei bright, as CellBin feeds H&E to the ssDNA model
    nonzero = g[g > 0]
    if nonzero.size:
        g = np.minimum(g, np.percentile(nonzero, 99.9))
    g = _unit(g)
    if clahe:
        g = _unit(equalize_adapthist(g, kernel_size=128))
    return g[..., None]


# ---- targets and instances -------------------------------------------------------------------------------------


def touching_rims(labels: np.ndarray) -> np.ndarray:
    """Object pixels with a pixel of another object among their 8 neighbours."""
    big = np.iinfo(np.uint32).max
    lab = labels.astype(np.uint32)
    hi = ndi.maximum_filter(lab, size=3)
    lo = ndi.minimum_filter(np.where(lab > 0, lab, big), size=3)
    return (lab > 0) & ((hi != lab) | (lo != lab))


def targets(labels: np.ndarray, kind: str, border_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """(target, pixel weight) float32 maps for one labelled patch."""
    fg = labels > 0
    if kind == "fg":
        return fg.astype(np.float32), np.ones(labels.shape, np.float32)
    rims = touching_rims(labels)
    return (fg & ~rims).astype(np.float32), np.where(rims, border_weight, 1.0).astype(np.float32)


def fill_gaps(labels: np.ndarray, size: int = 5) -> np.ndarray:
    """Give background pixels between two different objects (the 2-pixel predicted rims) to the nearest object."""
    big = np.iinfo(np.uint32).max
    hi = ndi.maximum_filter(labels, size=size)
    lo = ndi.minimum_filter(np.where(labels > 0, labels, big), size=size)
    gap = (labels == 0) & (lo != big) & (hi != lo)
    if not gap.any():
        return labels
    _, (iy, ix) = ndi.distance_transform_edt(labels == 0, return_indices=True)
    out = labels.copy()
    out[gap] = labels[iy[gap], ix[gap]]
    return out


def instances(prob: np.ndarray, threshold: float, h: float, min_size: int, rims: bool) -> np.ndarray:
    """Foreground probability -> uint32 instance labels (distance transform, h-maxima seeds, watershed)."""
    from skimage.morphology import h_maxima
    from skimage.segmentation import relabel_sequential, watershed

    fg = ndi.binary_fill_holes(prob > threshold)
    if not fg.any():
        return np.zeros(prob.shape, np.uint32)
    dist = ndi.gaussian_filter(ndi.distance_transform_edt(fg), 1.0)
    seeds, _ = ndi.label(h_maxima(dist, h) & fg, structure=np.ones((3, 3)))
    labels = watershed(-dist, seeds, mask=fg).astype(np.uint32)
    if rims:
        labels = fill_gaps(labels)
    sizes = np.bincount(labels.ravel())
    labels[sizes[labels] < min_size] = 0
    return relabel_sequential(labels)[0].astype(np.uint32)


# ---- tiled prediction ------------------------------------------------------------------------------------------


def windows(shape: tuple[int, int], patch: int) -> tuple[int, int, list[tuple[int, int]]]:
    """(margin, stride, window corners in the padded image): windows overlap by 2 x margin; centres tile it."""
    margin = patch // 8
    stride = patch - 2 * margin
    ny, nx = -(-shape[0] // stride), -(-shape[1] // stride)
    return margin, stride, [(i * stride, j * stride) for i in range(ny) for j in range(nx)]


def tiled_probability(forward, x: np.ndarray, patch: int, batch: int = 4) -> np.ndarray:
    """Foreground probability of a (H, W, C) image by overlapping `patch` windows (reflection padding)."""
    h, w = x.shape[:2]
    if h <= patch and w <= patch:  # one window holds it all: no overlap needed
        xb = np.pad(x, ((0, patch - h), (0, patch - w), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
        return np.asarray(forward(xb[None]))[0, :h, :w, 0]
    margin, stride, corners = windows((h, w), patch)
    ny, nx = -(-h // stride), -(-w // stride)
    pad = ((margin, ny * stride - h + margin), (margin, nx * stride - w + margin), (0, 0))
    padded = np.pad(x, pad, mode="reflect" if min(h, w) > 1 else "edge")
    out = np.zeros((ny * stride, nx * stride), np.float32)
    for k in range(0, len(corners), batch):
        chunk = corners[k : k + batch]
        xb = np.stack([padded[y0 : y0 + patch, x0 : x0 + patch] for y0, x0 in chunk]).astype(np.float32)
        pred = np.asarray(forward(xb))[..., 0]
        for j, (y0, x0) in enumerate(chunk):
            out[y0 : y0 + stride, x0 : x0 + stride] = pred[j, margin : margin + stride, margin : margin + stride]
    return out[:h, :w]


def _forward(model):
    import tensorflow as tf

    return tf.function(lambda xb: model(xb, training=False), reduce_retracing=True)


class CellbinSegmenter(Segmenter):
    def __init__(self, model, config: dict):
        self.model, self.config = model, config
        self.forward = _forward(model)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        c = self.config
        return preprocess(image, c["stain"], c["channels"], bool(c["clahe"]))

    def probability(self, image: np.ndarray, prepared: bool = False) -> np.ndarray:
        x = image if prepared else self.prepare(image)
        return tiled_probability(self.forward, x, self.config["patch"])

    def labels(self, prob: np.ndarray, threshold: float | None = None, h: float | None = None) -> np.ndarray:
        c = self.config
        return instances(
            prob,
            c["threshold"] if threshold is None else threshold,
            c["h"] if h is None else h,
            c["min_size"],
            c["target"] == "border",
        )

    def predict(self, image: np.ndarray) -> np.ndarray:
        return self.labels(self.probability(image))

    def describe(self) -> dict:
        return {
            k: self.config[k]
            for k in ("patch", "threshold", "h", "min_size", "target", "weights_matched")
            if k in self.config
        }


# ---- training --------------------------------------------------------------------------------------------------


def _loss(y, p, w, dice: float):
    import tensorflow as tf

    p = tf.clip_by_value(p, 1e-6, 1.0 - 1e-6)
    bce = -(y * tf.math.log(p) + (1.0 - y) * tf.math.log(1.0 - p))
    loss = tf.reduce_sum(w * bce) / tf.reduce_sum(w)
    if dice:
        loss += dice * (1.0 - (2.0 * tf.reduce_sum(p * y) + 1.0) / (tf.reduce_sum(p) + tf.reduce_sum(y) + 1.0))
    return loss


def _crop(image: np.ndarray, labels: np.ndarray, size: int, rng: np.random.Generator):
    y0 = int(rng.integers(labels.shape[0] - size + 1))
    x0 = int(rng.integers(labels.shape[1] - size + 1))
    return image[y0 : y0 + size, x0 : x0 + size], labels[y0 : y0 + size, x0 : x0 + size]


class CellbinTrainer(Trainer):
    def __init__(self, model, config: dict, train: list, val: list, params: TrainParams):
        import keras
        import tensorflow as tf

        self.model, self.config, self.params, self.aug = model, config, params, Augment()
        c = config
        self.X = [preprocess(s.image, c["stain"], c["channels"], bool(c["clahe"])) for s in train]
        self.L = [s.labels for s in train]
        self._segmenter = CellbinSegmenter(model, config)  # one compiled forward pass for all validations
        self.val = [
            (self._segmenter.prepare(s.image), *targets(s.labels, c["target"], c["border_weight"])) for s in val
        ]
        self.optimizer = keras.optimizers.Adam(learning_rate=1e-3)
        self._step = tf.function(self._train_step, reduce_retracing=True)

    def _train_step(self, x, y, w):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = _loss(y, self.model(x, training=True)[..., 0], w, self.config["dice"])
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return loss

    def _batch(self, inds, rng):
        c = self.config
        xs, ys, ws = [], [], []
        for i in inds:
            img, lab = _crop(self.X[i], self.L[i], c["patch"], rng)
            img, lab = augment_pair(img, lab, rng, self.aug)
            t, w = targets(lab, c["target"], c["border_weight"])
            xs.append(img)
            ys.append(t)
            ws.append(w)
        return np.stack(xs).astype(np.float32), np.stack(ys), np.stack(ws)

    def train_epoch(self, order: np.ndarray, lr: float, epoch: int) -> float:
        self.optimizer.learning_rate.assign(lr)
        rng = np.random.default_rng((self.params.seed, epoch))
        total = 0.0
        for k in range(0, len(order), self.params.batch_size):
            inds = order[k : k + self.params.batch_size]  # only real samples: the last batch may be smaller
            total += float(self._step(*self._batch(inds, rng))) * len(inds)
        return total / max(len(order), 1)

    def val_loss(self) -> float:
        seg = self.segmenter()
        losses = [float(_loss(t, seg.probability(x, prepared=True), w, self.config["dice"])) for x, t, w in self.val]
        return float(np.mean(losses))

    def segmenter(self) -> CellbinSegmenter:
        return self._segmenter

    def save(self, folder: Path) -> None:
        from csrefiner.models.cellbin.net import save_weights

        (folder / "cellbin").mkdir(parents=True, exist_ok=True)
        save_weights(self.model, folder / "cellbin" / "weights.hdf5")
        (folder / "cellbin" / "config.json").write_text(json.dumps(self.config, indent=2) + "\n")

    def restore(self, folder: Path) -> None:
        from csrefiner.models.cellbin.net import load_weights

        load_weights(self.model, folder / "cellbin" / "weights.hdf5")

    def finish(self, folder: Path, val: list) -> dict:
        """Pick the probability threshold and the h-maxima depth on the validation patches (F1 at IoU 0.5)."""
        from csrefiner.metrics.matching import match_counts
        from csrefiner.metrics.overlap import label_overlap

        seg = self.segmenter()
        probs = [seg.probability(s.image) for s in val]
        scores = {}
        for t in (0.3, 0.4, 0.5, 0.6, 0.7):
            for h in (0.5, 1.0, 2.0, 3.0):
                total = None
                for s, p in zip(val, probs):
                    counts = match_counts(label_overlap(s.labels, seg.labels(p, t, h)), 0.5)
                    total = counts if total is None else total + counts
                scores[(t, h)] = float(total.scores()["f1"])
        best = max(scores, key=lambda k: (scores[k], -abs(k[0] - 0.5), -abs(k[1] - 2.0)))
        self.config["threshold"], self.config["h"] = best
        log.info("threshold %s, h-maxima depth %s (validation F1 %.3f)", *best, scores[best])
        (folder / "cellbin" / "config.json").write_text(json.dumps(self.config, indent=2) + "\n")
        return {
            "thresholds": {
                "threshold": best[0],
                "h": best[1],
                "validation_f1": {f"t={t},h={h}": v for (t, h), v in scores.items()},
            }
        }

    def describe(self) -> dict:
        c = self.config
        return {
            "network": "BCDU-Net D3 (CellBin)",
            "base": c["base"],
            "channels": c["channels"],
            "patch": c["patch"],
            "target": c["target"],
            "parameters": int(self.model.count_params()),
            "device": c.get("device", "cpu"),
            "preprocessing": "per image: grey, clip p99.9, [0,1], CLAHE 128, [0,1]"
            if c["channels"] == 1
            else "per image: RGB, [0,1], CLAHE 128, [0,1]",
            "augmentation": "csrefiner augment_pair (flips, rot90, intensity) + random square crop",
        }


# ---- backend ---------------------------------------------------------------------------------------------------


class CellbinBackend(Backend):
    name = "cellbin"
    option_specs = OPTIONS
    requires = ("tensorflow", "keras", "h5py")
    default_lr = (1e-3, 1e-4)  # Adam; CellBin/CSRefiner fine-tune at 1e-4
    known_names = tuple(OFFICIAL) + tuple(n.removesuffix(".hdf5") for n in OFFICIAL)

    def find_pretrained(self, spec: str) -> Pretrained:
        from csrefiner.models.cellbin.net import file_geometry

        path = Path(spec).expanduser()
        if path.is_file():
            file_geometry(path)  # refuses files that are not BCDU-Net weights, before any training
            return Pretrained(spec, path)
        if "/" in spec or (path.suffix and path.suffix not in (".hdf5", ".h5")):
            raise CsrefinerError(
                f"{spec}: no such CellBin weights file; give a .hdf5 path or one of {', '.join(OFFICIAL)}"
            )
        name = spec if spec.endswith((".hdf5", ".h5")) else spec + ".hdf5"
        cached = model_dir() / name
        if cached.is_file():
            file_geometry(cached)
            return Pretrained(spec, cached)
        raise CsrefinerError(
            f"CellBin weights '{name}' are not on this machine (nothing is downloaded at run time): put the file "
            f"'{name}' into {model_dir()} ($CSREFINER_MODELS/cellbin, default ~/.csrefiner/models/cellbin), or give "
            f"its path; the official files are {', '.join(OFFICIAL)} (STOmics links them from {WEIGHTS_URL})"
        )

    def local_models(self) -> list[LocalModel]:
        folder = model_dir()
        if not folder.is_dir():
            return []
        return [LocalModel(self.name, p.name, p, OFFICIAL.get(p.name, "")) for p in sorted(folder.glob("*.hdf5"))]

    def cache_hint(self) -> str:
        return f"put CellBin BCDU-Net weights ({', '.join(OFFICIAL)}) into {model_dir()} ($CSREFINER_MODELS/cellbin)"

    def check_sample_shape(self, shape: tuple[int, int]) -> str | None:
        if shape[0] % 8 or shape[1] % 8 or min(shape) < 32:
            return (
                f"patch is {shape[0]} x {shape[1]}; CellBin's BCDU-Net pools three times, so both sides must be "
                "multiples of 8 and at least 32 (the official size is 256 x 256: `csrefiner crop --size 256`)"
            )
        return None

    def _config(self, source: Pretrained, params: TrainParams, train: list | None = None) -> dict:
        from csrefiner.models.cellbin.net import file_geometry

        opts = self.option_values(params.options)
        if source.folder:
            config = read_model_json(source.path / "cellbin" / "config.json", what="cellbin config")
            for key in ("threshold", "h", "min_size"):  # post-processing may be overridden at segment time
                if key in opts.raw:
                    config[key] = opts[key]
            return config
        config = DEFAULTS | {"stain": params.stain} | opts.given
        if source.scratch:
            config.setdefault("channels", 3 if params.stain == "he" else 1)
        else:
            config["channels"], config["base"] = file_geometry(source.path)
        if train:
            side = min(min(s.labels.shape) for s in train)
            config["patch"] = int(min(config["patch"], side // 8 * 8))
        return config

    def _model(self, config: dict, weights: Path | None):
        import keras

        from csrefiner.models.cellbin.net import build_bcdu, load_weights

        keras.utils.set_random_seed(int(config.get("seed", 0)))
        model = build_bcdu(config["patch"], config["channels"], config["base"], config["dropout"])
        if weights is not None:
            config["weights_matched"] = load_weights(model, weights)
        return model

    def trainer(self, base: Pretrained, params: TrainParams, train: list, val: list) -> Trainer:
        from csrefiner.models.device import tensorflow_device

        device = tensorflow_device(params.device)
        config = self._config(base, params, train) | {"seed": params.seed, "device": device}
        if base.folder:
            config["patch"] = int(min(config["patch"], min(min(s.labels.shape) for s in train) // 8 * 8))
        weights = None if base.scratch else (base.path / "cellbin" / "weights.hdf5" if base.folder else base.path)
        return CellbinTrainer(self._model(config, weights), config, train, val, params)

    def load(self, source: Pretrained, params: TrainParams) -> Segmenter:
        from csrefiner.models.device import tensorflow_device

        tensorflow_device(params.device)
        config = self._config(source, params)
        weights = source.path / "cellbin" / "weights.hdf5" if source.folder else source.path
        return CellbinSegmenter(self._model(config, weights), config)


BACKEND = CellbinBackend()
