"""`--device auto|cpu|cuda` for torch and TensorFlow backends; the model card records what was used."""

from __future__ import annotations

import logging
import os

from csrefiner.errors import CsrefinerError

CHOICES = ("auto", "cpu", "cuda")
log = logging.getLogger(__name__)


def _check(spec: str) -> str:
    if spec not in CHOICES:
        raise CsrefinerError(f"--device {spec!r}: use one of {', '.join(CHOICES)}")
    return spec


def torch_device(spec: str):
    import torch

    spec = _check(spec)
    has_cuda = torch.cuda.is_available()
    if spec == "cuda" and not has_cuda:
        raise CsrefinerError(
            "--device cuda: torch sees no CUDA GPU here (CPU build of torch, or no driver); use --device cpu"
        )
    device = torch.device("cuda" if spec == "cuda" or (spec == "auto" and has_cuda) else "cpu")
    log.debug("--device %s: torch runs on %s", spec, device)
    return device


def tensorflow_device(spec: str) -> str:
    """Hide GPUs from TensorFlow for cpu; returns 'cuda' or 'cpu'. Call before TensorFlow builds a model."""
    spec = _check(spec)
    if spec == "cpu":
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
        return "cpu"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if spec == "cuda" and not gpus:
        raise CsrefinerError(
            "--device cuda: TensorFlow sees no GPU here (tensorflow-cpu, or no driver); use --device cpu"
        )
    for gpu in gpus:  # take memory as needed, so several tasks can share a GPU
        tf.config.experimental.set_memory_growth(gpu, True)
    log.debug("--device %s: TensorFlow sees %d GPU(s)", spec, len(gpus))
    return "cuda" if gpus else "cpu"
