"""StarDist 2D (stardist 0.9.2, TensorFlow / Keras 3), trained with stardist's own data and losses.

Training keeps stardist's patch generator (`StarDistData2D`: star-convex distance and object-probability
targets on the model's grid) and its losses and optimizer (`prepare_for_training`), but csrefiner's shared
loop drives the epochs: `StarDist2D.train` restarts its schedule at every call and keeps its own checkpoints.
So the model is compiled once (no ReduceLROnPlateau, no checkpoint callbacks, no TensorBoard), and each
epoch sets Adam's learning rate to the scheduled value and fits one pass over the epoch's sample order.
Augmentation is csrefiner's `augment_pair` (flips, rot90, intensity jitter, seeded) as stardist's augmenter.
After training, `optimize_thresholds` tunes the probability / NMS thresholds on the validation patches.

Preprocessing, identical at training and inference: one grey channel (`grey(image, stain)`: ssDNA/DAPI as is,
H&E as hematoxylin density) or, for a base model with three input channels (2D_versatile_he), RGB; then
per-image percentile normalisation (1, 99.8) over the whole image (all channels together), as stardist's
examples do. Tiles are normalised as a whole, so a 2048 px tile is scaled by its own percentiles.

Model folder: `stardist/config.json`, `stardist/weights_best.h5`, `stardist/thresholds.json` (stardist's own
layout: `StarDist2D(None, name="stardist", basedir=FOLDER)` loads it) and `stardist/csrefiner.json`
(stain, normalisation, the learning rate set).
Pretrained names resolve only in the keras cache as csbdeep uses it; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.models.augment import Augment, augment_pair
from csrefiner.models.base import Backend, LocalModel, Pretrained, Segmenter, Trainer, TrainParams
from csrefiner.models.card import read_model_json
from csrefiner.models.data import grey, percentile_normalize
from csrefiner.models.options import Option
from csrefiner.models.seeding import seeded

log = logging.getLogger(__name__)

SUBDIR = "stardist"
WEIGHTS = "weights_best.h5"
NORMALIZE = (1.0, 99.8)
# stardist's registry (stardist/models/__init__.py), so the message can name the file without importing it
REGISTRY = {
    name: f"https://github.com/stardist/stardist-models/releases/download/v0.1/python_{name}.zip"
    for name in ("2D_versatile_fluo", "2D_versatile_he", "2D_paper_dsb2018", "2D_demo")
}
# from scratch: small enough to train on a CPU (1.4M parameters; lr 1e-3 trains it, stardist's default 3e-4 stalls)
SCRATCH = {"n_rays": 32, "grid": 2, "unet_n_depth": 3, "unet_n_filter_base": 32}
MAX_PATCH = 256
MAX_TILE = 1024  # prediction tiles (stardist n_tiles) of at most this side keep memory flat on big tiles


# ---------------------------------------------------------------- local cache of pretrained models


def keras_home() -> Path:
    """Where keras (and so csbdeep's `get_model_folder`) keeps downloads: $KERAS_HOME or ~/.keras."""
    env = os.environ.get("KERAS_HOME")
    return Path(env).expanduser() if env else Path.home() / ".keras"


def cache_folder(key: str) -> Path:
    return keras_home() / "models" / "StarDist2D" / key


def _is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and (any(path.glob("*.h5")) or any(path.glob("*.hdf5")))


def cached_model(key: str) -> Path | None:
    """The unpacked model of `key`: keras < 3.6 unpacks into <key>/, keras >= 3.6 into <key>/<key>_extracted/."""
    base = cache_folder(key)
    for path in (base, base / f"{key}_extracted", base / key):
        if _is_model_folder(path):
            return path
    return None


def weights_file(folder: Path) -> Path:
    """stardist's choice: the newest file with 'best' in its name, else the newest .h5."""
    files = sorted([*folder.glob("*.h5"), *folder.glob("*.hdf5")], key=lambda f: f.stat().st_mtime, reverse=True)
    if not files:
        raise CsrefinerError(f"{folder}: no StarDist weights (*.h5) here; the model folder is incomplete")
    best = [f for f in files if "best" in f.name]
    return (best or files)[0]


def _read_json(path: Path) -> dict:
    return read_model_json(path, what="StarDist file")


# ---------------------------------------------------------------- building models


def _config(values: dict):
    from stardist.models import Config2D

    values = Config2D.update_loaded_config(dict(values))
    try:
        config = Config2D(**values)
    except (TypeError, ValueError) as exc:
        raise CsrefinerError(f"invalid StarDist configuration ({exc})") from exc
    if not config.is_valid():
        raise CsrefinerError(f"invalid StarDist configuration: {', '.join(config.is_valid(True)[1])}")
    return config


def build_model(config_values: dict, weights: Path | None, seed: int = 0):
    """A StarDist2D without a folder of its own (stardist writes nothing), optionally with weights."""
    import keras
    from stardist.models import StarDist2D

    keras.utils.set_random_seed(seed)  # reproducible initial weights
    with contextlib.redirect_stdout(io.StringIO()):
        model = StarDist2D(_config(config_values), name="stardist", basedir=None)
    if weights is not None:
        try:
            model.keras_model.load_weights(str(weights))
        except Exception as exc:  # h5py / keras raise many types for a damaged or foreign file
            raise CsrefinerError(
                f"{weights}: cannot load these StarDist weights ({type(exc).__name__}: {exc}); "
                "the file is damaged or belongs to another configuration"
            ) from exc
    return model


def open_folder(folder: Path) -> tuple[dict, Path, dict | None]:
    """(config values, weights file, thresholds or None) of a StarDist model folder (stardist's layout)."""
    if not (folder / "config.json").is_file():
        raise CsrefinerError(
            f"{folder}: no config.json, so not a StarDist model folder (config.json + weights_best.h5)"
        )
    config = _read_json(folder / "config.json")
    if config.get("n_dim", 2) != 2 or "n_rays" not in config:
        raise CsrefinerError(f"{folder}/config.json: not a StarDist 2D configuration")
    thr = folder / "thresholds.json"
    return config, weights_file(folder), _read_json(thr) if thr.is_file() else None


def model_input(image: np.ndarray, stain: str, n_channel: int) -> np.ndarray:
    """Network input: grey (H, W) or RGB (H, W, 3), percentile-normalised per image."""
    if n_channel == 1:
        x = grey(image, stain)
    else:
        img = np.asarray(image, dtype=np.float32)
        x = img[..., :3] if img.ndim == 3 else np.repeat(img[..., None], 3, axis=-1)
        if x.shape[-1] != n_channel:
            raise CsrefinerError(f"the StarDist model wants {n_channel} input channels, the image has {x.shape[-1]}")
    return percentile_normalize(x, *NORMALIZE)


def n_tiles(shape: tuple[int, ...], n_channel: int) -> tuple[int, ...]:
    tiles = tuple(max(1, math.ceil(s / MAX_TILE)) for s in shape[:2])
    return tiles + ((1,) if n_channel > 1 else ())


# ---------------------------------------------------------------- prediction


class StarDistSegmenter(Segmenter):
    def __init__(self, model, prep: dict):
        self.model, self.prep = model, prep

    @property
    def n_channel(self) -> int:
        return int(self.model.config.n_channel_in)

    def predict(self, image: np.ndarray) -> np.ndarray:
        x = model_input(image, self.prep.get("stain", "ss"), self.n_channel)
        labels, _ = self.model.predict_instances(
            x, n_tiles=n_tiles(x.shape, self.n_channel), show_tile_progress=False, verbose=False
        )
        return np.asarray(labels).astype(np.uint32)

    def describe(self) -> dict:
        t = self.model.thresholds
        return {
            "prob_thresh": float(t.prob),
            "nms_thresh": float(t.nms),
            "normalize": list(NORMALIZE),
            "input": "rgb" if self.n_channel > 1 else "grey",
        }


def _set_thresholds(model, thresholds: dict | None) -> None:
    if thresholds:
        model.thresholds = {"prob": float(thresholds["prob"]), "nms": float(thresholds["nms"])}


# ---------------------------------------------------------------- training


def div_by(config_values: dict) -> int:
    """Patch sides must be multiples of the grid times 2**depth (stardist's `_axes_div_by`)."""
    grid = config_values.get("grid", (1, 1))
    g = max(grid) if isinstance(grid, (list, tuple)) else int(grid)
    return g * 2 ** int(config_values.get("unet_n_depth", 3))


def choose_patch_size(samples: list, size: int | None, step: int) -> int:
    """`size` (--option patch_size), or the largest multiple of `step` (at most 256) that fits every patch."""
    smallest = min(min(s.labels.shape) for s in samples)
    if size is not None:
        if size % step or size < step:
            raise CsrefinerError(f"--option patch_size={size}: must be a multiple of {step} (grid x 2**unet_n_depth)")
        small = [s for s in samples if min(s.labels.shape) < size]
        if small:
            s = small[0]
            raise CsrefinerError(
                f"{s.source}/{s.key}: patch {s.labels.shape} is smaller than the StarDist training "
                f"patch size {size}; use --option patch_size={max(step, smallest // step * step)} "
                "or larger annotated patches"
            )
        return size
    size = min(MAX_PATCH, smallest // step * step)
    if size < step:
        raise CsrefinerError(f"annotated patches must be at least {step} x {step} px for this StarDist network")
    return size


@functools.cache
def _ordered_data_class():
    from stardist.models import StarDistData2D

    class OrderedData(StarDistData2D):
        """stardist's generator, but batch i is the i-th slice of the epoch's sample order (repeats allowed)."""

        def batch(self, i):
            return self.order[i * self.batch_size : (i + 1) * self.batch_size]

    return OrderedData


def ordered_data(X, Y, order, **kwargs):
    data = _ordered_data_class()(X, Y, **kwargs)
    data.order = np.asarray(order)
    return data


class StarDistTrainer(Trainer):
    def __init__(
        self,
        model,
        prep: dict,
        train: list,
        val: list,
        params: TrainParams,
        base_lr: float,
        patch_size: int,
        device: str,
        repeats: int = 1,
    ):
        self.model, self.prep, self.params, self.device = model, prep, params, device
        self.patch, self.aug, self.base_lr = patch_size, Augment(), base_lr
        cfg = model.config
        self.X = [model_input(s.image, prep["stain"], cfg.n_channel_in) for s in train]
        self.Y = [s.labels.astype(np.int32) for s in train]  # stardist's label dtype
        self.repeats = repeats  # crops per patch per epoch
        self.lr_set: float | None = None
        from keras.optimizers import Adam

        model.prepare_for_training(Adam(base_lr))
        self.val_x, self.val_y = self._fixed_val(val)
        self.val_images = [model_input(s.image, prep["stain"], cfg.n_channel_in) for s in val]
        self.val_labels = [s.labels.astype(np.int32) for s in val]

    def _data_kwargs(self) -> dict:
        cfg = self.model.config
        return dict(
            n_rays=cfg.n_rays,
            patch_size=(self.patch, self.patch),
            grid=cfg.grid,
            shape_completion=False,
            use_gpu=False,
            foreground_prob=cfg.train_foreground_only,
            sample_ind_cache=True,
        )

    def _fixed_val(self, val: list):
        """One crop per validation patch, drawn once with a fixed seed, never augmented."""
        X = [model_input(s.image, self.prep["stain"], self.model.config.n_channel_in) for s in val]
        with seeded(self.params.seed + 12345):
            data = ordered_data(
                X,
                [s.labels.astype(np.int32) for s in val],
                np.arange(len(val)),
                batch_size=len(val),
                length=1,
                **self._data_kwargs(),
            )
            (x,), y = data[0]
        return x, list(y)

    def train_epoch(self, order: np.ndarray, lr: float, epoch: int) -> float:
        bs = self.params.batch_size
        steps = max(1, math.ceil(len(order) * self.repeats / bs))
        full = np.resize(np.asarray(order), steps * bs)  # cyclic fill: every batch has the same shape
        rng = np.random.default_rng((self.params.seed, epoch))
        np.random.seed((self.params.seed * 100003 + epoch) % 2**32)  # stardist draws crop positions from np.random
        data = ordered_data(
            self.X,
            self.Y,
            full,
            batch_size=bs,
            length=steps,
            augmenter=lambda x, y: augment_pair(x, y, rng, self.aug),
            **self._data_kwargs(),
        )
        self.model.keras_model.optimizer.learning_rate.assign(lr)
        self.lr_set = lr
        hist = self.model.keras_model.fit(iter(data), epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0)
        return float(hist.history["loss"][-1])

    def val_loss(self) -> float:
        out = self.model.keras_model.evaluate(
            self.val_x, self.val_y, batch_size=self.params.batch_size, verbose=0, return_dict=True
        )
        return float(out["loss"])

    def segmenter(self) -> Segmenter:
        return StarDistSegmenter(self.model, self.prep)

    def _prep_record(self) -> dict:
        return self.prep | {
            "normalize": list(NORMALIZE),
            "base_lr": self.base_lr,
            "last_lr": self.lr_set,
            "patch_size": self.patch,
            "batch_size": self.params.batch_size,
        }

    def save(self, folder: Path) -> None:
        from csbdeep.utils import save_json

        out = Path(folder) / SUBDIR
        out.mkdir(parents=True, exist_ok=True)
        cfg = self.model.config
        cfg.train_learning_rate = self.base_lr  # the rate the schedule started from (stardist won't record it)
        save_json(vars(cfg), str(out / "config.json"))
        self.model.keras_model.save_weights(str(out / WEIGHTS))  # csbdeep's patch: legacy h5, loadable by stardist
        t = self.model.thresholds
        save_json({"prob": float(t.prob), "nms": float(t.nms)}, str(out / "thresholds.json"))
        (out / "csrefiner.json").write_text(json.dumps(self._prep_record(), indent=2) + "\n")

    def restore(self, folder: Path) -> None:
        _, weights, thresholds = open_folder(Path(folder) / SUBDIR)
        self.model.keras_model.load_weights(str(weights))
        _set_thresholds(self.model, thresholds)

    def finish(self, folder: Path, val: list) -> dict:
        """stardist's threshold optimisation on the validation patches (F1 at IoU 0.5), kept only when it beats the
        thresholds the model already had: on a few validation objects many thresholds tie, and stardist's pick
        among them can lose most objects elsewhere (1 patch of 5 nuclei: prob 0.84, held-out F1 0.23 -> 0.04)."""
        from csbdeep.utils import save_json

        nms = (0.3, 0.4, 0.5)
        start = {"prob": float(self.model.thresholds.prob), "nms": float(self.model.thresholds.nms)}
        with contextlib.redirect_stdout(io.StringIO()):
            opt = self.model.optimize_thresholds(
                self.val_images,
                self.val_labels,
                nms_threshs=list(nms),
                iou_threshs=[0.5],
                save_to_json=False,
                predict_kwargs={"show_tile_progress": False},
                optimize_kwargs={"measure": "f1", "verbose": 0},
            )
        opt = {"prob": float(opt["prob"]), "nms": float(opt["nms"])}
        f1 = {"start": self._val_f1(start), "optimized": self._val_f1(opt)}
        kept = "optimized" if f1["optimized"] > f1["start"] else "start"
        chosen = opt if kept == "optimized" else start
        _set_thresholds(self.model, chosen)
        log.info(
            "thresholds: prob %.3f, nms %.2f (%s; validation F1 %.3f with the start's, %.3f optimized)",
            chosen["prob"],
            chosen["nms"],
            kept,
            f1["start"],
            f1["optimized"],
        )
        if not f1["start"] and not f1["optimized"]:
            log.warning(
                "StarDist matches no validation object at either threshold set (F1 0 at IoU 0.5): it will find "
                "few or no cells. Train longer, add random crops (--option repeats=8 --option patch_size=64) or "
                "start from a pretrained model."
            )
        save_json(chosen, str(Path(folder) / SUBDIR / "thresholds.json"))
        return {
            "thresholds": {
                "prob_thresh": chosen["prob"],
                "nms_thresh": chosen["nms"],
                "optimized_on": "validation patches",
                "measure": "f1",
                "iou": 0.5,
                "nms_candidates": list(nms),
                "kept": kept,  # optimized only when it beats the start's thresholds on the validation patches
                "start": start,
                "optimized": opt,
                "validation_f1": f1,
            }
        }

    def _val_f1(self, thresholds: dict) -> float:
        """F1 at IoU 0.5 over all validation patches (objects pooled) with these thresholds."""
        from csrefiner.metrics.matching import matching

        tp = fp = fn = 0
        for x, y in zip(self.val_images, self.val_labels):
            labels, _ = self.model.predict_instances(
                x,
                prob_thresh=thresholds["prob"],
                nms_thresh=thresholds["nms"],
                n_tiles=n_tiles(x.shape, self.model.config.n_channel_in),
                show_tile_progress=False,
                verbose=False,
            )
            m = matching(y, np.asarray(labels))
            tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
        return 2 * tp / (2 * tp + fp + fn) if tp else 0.0

    def describe(self) -> dict:
        cfg = self.model.config
        return {
            "network": "StarDist2D U-Net",
            "device": self.device,
            "parameters": int(self.model.keras_model.count_params()),
            "n_rays": cfg.n_rays,
            "grid": list(cfg.grid),
            "unet_n_depth": cfg.unet_n_depth,
            "unet_n_filter_base": cfg.unet_n_filter_base,
            "n_channel_in": cfg.n_channel_in,
            "patch_size": self.patch,
            "batch_size": self.params.batch_size,
            "repeats": self.repeats,
            "normalize": f"percentile {NORMALIZE[0]}-{NORMALIZE[1]} per image",
            "optimizer": "Adam",
            "learning_rate": self.base_lr,
            "last_learning_rate": self.lr_set,
            "augmentation": "csrefiner augment_pair as stardist's augmenter (flips, rot90, intensity jitter)",
        }


# ---------------------------------------------------------------- the backend


class StarDistBackend(Backend):
    name = "stardist"
    option_specs = (
        Option("n_rays", "int", SCRATCH["n_rays"], "rays per star-convex polygon", scratch=True),
        Option("grid", "int", SCRATCH["grid"], "subsampling of the output grid", scratch=True),
        Option("unet_n_depth", "int", SCRATCH["unet_n_depth"], "U-Net depth", scratch=True),
        Option(
            "unet_n_filter_base", "int", SCRATCH["unet_n_filter_base"], "U-Net filters of the first level", scratch=True
        ),
        Option(
            "patch_size",
            "int",
            None,
            "training patch side, px, a multiple of grid x 2^depth (default: the "
            "largest such that fits every patch, at most 256)",
        ),
        Option("repeats", "int", 1, "random crops per patch per epoch"),
    )
    requires = ("stardist", "tensorflow")
    default_lr = (1e-3, 1e-4)  # Adam; stardist's 3e-4 stalls from scratch here, 1e-4 fine-tunes
    known_names = tuple(REGISTRY)

    def find_pretrained(self, spec: str) -> Pretrained:
        path = Path(spec).expanduser()
        if path.is_dir():
            open_folder(path)  # a clear error now rather than at training time
            return Pretrained(spec, path)
        if spec in REGISTRY:
            found = cached_model(spec)
            if found:
                return Pretrained(spec, found)
            raise CsrefinerError(
                f"StarDist model '{spec}' is not on this machine (nothing is downloaded at run time): unpack "
                f"{REGISTRY[spec]} into {cache_folder(spec)}/ (config.json, thresholds.json, weights_best.h5 directly "
                "inside; KERAS_HOME moves the cache), or give the path of a StarDist model folder"
            )
        if "/" in spec or path.exists():
            raise CsrefinerError(f"{spec}: not a StarDist model folder (config.json + weights_best.h5)")
        raise CsrefinerError(
            f"unknown StarDist model '{spec}': use one of {', '.join(REGISTRY)}, a StarDist model folder, or scratch"
        )

    def local_models(self) -> list[LocalModel]:
        return [LocalModel(self.name, key, path) for key in REGISTRY if (path := cached_model(key))]

    def cache_hint(self) -> str:
        return (
            f"unpack e.g. {REGISTRY['2D_versatile_fluo']} into {cache_folder('2D_versatile_fluo')}/ "
            "(one folder per model under models/StarDist2D/ in the keras cache, $KERAS_HOME or ~/.keras)"
        )

    def check_sample_shape(self, shape: tuple[int, int]) -> str | None:
        step = div_by(SCRATCH)
        if min(shape) < step:
            return f"patch {tuple(shape)} is smaller than {step} x {step} px, the least StarDist can train on"
        return None

    def _source(self, source: Pretrained) -> tuple[dict, Path | None, dict | None, dict]:
        """(config values, weights, thresholds, csrefiner preprocessing record) of a folder or pretrained."""
        if source.folder:
            sub = source.path / SUBDIR
            if not sub.is_dir():
                raise CsrefinerError(
                    f"{source.path}: no {SUBDIR}/ folder, so the StarDist model is missing; fine-tune again"
                )
            values, weights, thresholds = open_folder(sub)
            prep_file = sub / "csrefiner.json"
            prep = _read_json(prep_file) if prep_file.is_file() else {}
            return values, weights, thresholds, prep
        values, weights, thresholds = open_folder(source.path)
        return values, weights, thresholds, {}

    def trainer(self, base: Pretrained, params: TrainParams, train: list, val: list) -> Trainer:
        from csrefiner.models.device import tensorflow_device

        opts = self.option_values(params.options)
        if base.scratch:
            values = {
                "n_rays": opts["n_rays"],
                "grid": (opts["grid"],) * 2,
                "unet_n_depth": opts["unet_n_depth"],
                "unet_n_filter_base": opts["unet_n_filter_base"],
                "n_channel_in": 1,
            }
            weights, thresholds = None, None
        else:
            values, weights, thresholds, _ = self._source(base)
            self.check_scratch_options(params.options, base)
        patch = choose_patch_size(train + val, opts["patch_size"], div_by(values))
        lr = params.lr or self.default_lr[0 if base.scratch else 1]
        device = tensorflow_device(params.device)
        values = dict(values) | {
            "train_patch_size": (patch, patch),
            "train_batch_size": params.batch_size,
            "train_tensorboard": False,
            "train_reduce_lr": None,
            "train_learning_rate": lr,
            "use_gpu": False,
        }
        model = build_model(values, weights, params.seed)
        _set_thresholds(model, thresholds)
        prep = {"stain": params.stain, "input": "rgb" if model.config.n_channel_in > 1 else "grey"}
        return StarDistTrainer(model, prep, train, val, params, lr, patch, device, repeats=opts["repeats"])

    def load(self, source: Pretrained, params: TrainParams) -> Segmenter:
        from csrefiner.models.device import tensorflow_device

        tensorflow_device(params.device)
        values, weights, thresholds, prep = self._source(source)
        model = build_model(values, weights)
        _set_thresholds(model, thresholds)
        stain = prep.get("stain", params.stain) if source.folder else params.stain
        return StarDistSegmenter(model, {"stain": stain})


BACKEND = StarDistBackend()
