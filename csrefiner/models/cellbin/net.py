"""CellBin's network: BCDU-Net (Azad et al. 2019, d = 3) as STOmics builds it, in Keras 3.

Layout (STOmics/CSRefiner `models/models.py`, `BCDU_net_D3`, input 256 x 256 x 1 for ssDNA/DAPI, x 3 for H&E):
encoder 2 x conv3x3 at 64, 128, 256 filters with 2x2 max-pooling; bottleneck of three 2-conv 512 blocks, the
third fed with the concatenation of the first two (dense connections); decoder: 2x2 transposed conv + batch
norm + ReLU, then the skip and the up-sampled map are stacked as a 2-step sequence into a ConvLSTM2D
(128, 64, 32 filters, read backwards; unrolled, as the sequence has two steps), then 2 x conv3x3;
head conv3x3(2, relu) and conv1x1(1, sigmoid).
Dropout 0.5 after the third encoder block (skip branch) and in the bottleneck, as in the original.

Weighted layers carry the names tf.keras 2 gave them when STOmics built the model in a fresh session
(`conv2d`, `conv2d_1`, ..., `conv2d_transpose`, `batch_normalization`, `conv_lst_m2d`, ...), so the official
`.hdf5` files load by layer name. Keras' ConvLSTM2D needs a static spatial size, so the network is built for
one square window side (any multiple of 8: 256 as the official model, smaller for tests); the weights do not
depend on it.
"""

from __future__ import annotations

from collections import Counter

ORIGINAL_BASE = 64  # first-level filters of the official network


class _KerasNames:
    """tf.keras 2's default layer names: the first `conv2d`, then `conv2d_1`, `conv2d_2`, ..."""

    def __init__(self):
        self.seen = Counter()

    def __call__(self, kind: str) -> str:
        n = self.seen[kind]
        self.seen[kind] += 1
        return kind if n == 0 else f"{kind}_{n}"


def _stack_layer():
    import keras

    class SkipSequence(keras.layers.Layer):
        """(skip, up-sampled) -> a 2-step sequence (batch, 2, H, W, C) for ConvLSTM2D.

        The original builds it with Reshape + concatenate."""

        def call(self, skip, up):
            return keras.ops.stack([skip, up], axis=1)

    return SkipSequence


def build_bcdu(size: int = 256, channels: int = 1, base: int = ORIGINAL_BASE, dropout: float = 0.5):
    """The BCDU-Net D3 functional model, (size, size, channels) -> (size, size, 1) foreground probability."""
    import keras
    from keras import layers

    names, SkipSequence = _KerasNames(), _stack_layer()
    f1, f2, f3, f4 = base, 2 * base, 4 * base, 8 * base

    def conv(x, filters, size=3, activation="relu"):
        return layers.Conv2D(
            filters, size, activation=activation, padding="same", kernel_initializer="he_normal", name=names("conv2d")
        )(x)

    def drop(x, tag):
        return layers.Dropout(dropout, name=tag)(x) if dropout > 0 else x

    def up(x, filters):
        x = layers.Conv2DTranspose(
            filters, 2, strides=2, padding="same", kernel_initializer="he_normal", name=names("conv2d_transpose")
        )(x)
        x = layers.BatchNormalization(axis=3, name=names("batch_normalization"))(x)
        return layers.Activation("relu")(x)

    def merge(skip, upsampled, filters, tag):
        seq = SkipSequence(name=tag)(skip, upsampled)
        return layers.ConvLSTM2D(
            filters,
            (3, 3),
            padding="same",
            return_sequences=False,
            go_backwards=True,
            unroll=True,
            kernel_initializer="he_normal",
            name=names("conv_lst_m2d"),
        )(seq)

    inputs = keras.Input((size, size, channels), name="input_1")
    c1 = conv(conv(inputs, f1), f1)
    c2 = conv(conv(layers.MaxPooling2D(2)(c1), f2), f2)
    c3 = conv(conv(layers.MaxPooling2D(2)(c2), f3), f3)
    d3 = drop(c3, "skip3_dropout")
    c4 = conv(layers.MaxPooling2D(2)(c3), f4)
    d4_1 = drop(conv(c4, f4), "dense1_dropout")
    d4_2 = drop(conv(conv(d4_1, f4), f4), "dense2_dropout")
    dense = layers.Concatenate(axis=3)([d4_2, d4_1])
    d4_3 = drop(conv(conv(dense, f4), f4), "dense3_dropout")
    x = conv(conv(merge(d3, up(d4_3, f3), f2, "skip3_sequence"), f3), f3)
    x = conv(conv(merge(c2, up(x, f2), f1, "skip2_sequence"), f2), f2)
    x = conv(conv(merge(c1, up(x, f1), f1 // 2, "skip1_sequence"), f1), f1)
    x = conv(x, 2)
    outputs = conv(x, 1, size=1, activation="sigmoid")
    return keras.Model(inputs, outputs, name="bcdu_net_d3")


def weighted_layers(model) -> list:
    """Layers that hold weights, in model order (what a legacy .hdf5 stores, one group each)."""
    return [layer for layer in model.layers if layer.weights]


# ---- weights: the legacy Keras (tf.keras 2) .hdf5 layout, read and written by layer name -----------------------
# File attrs `layer_names`; one group per layer with attrs `weight_names` ("conv2d/kernel:0", ...) naming its
# datasets in the layer's weight order (trainable, then non-trainable). A full-model file (`model.save`) keeps the
# same structure under `model_weights`.


def read_weights(path) -> dict[str, list]:
    """{layer name: [arrays]} of a legacy Keras .hdf5 (weights-only or full model); layers without weights omitted."""
    import h5py
    import numpy as np

    from csrefiner.errors import CsrefinerError

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CsrefinerError(f"{path}: not an HDF5 file ({exc}); give a Keras .hdf5 of CellBin's BCDU-Net") from exc
    with f:
        root = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise CsrefinerError(
                f"{path}: an HDF5 file without Keras layer weights (no 'layer_names'); "
                "give a Keras .hdf5 of CellBin's BCDU-Net (e.g. cellseg_bcdu_SHDI_221008_tf.hdf5)"
            )
        out = {}
        for raw in root.attrs["layer_names"]:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            group = root[name]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]
            if names:
                out[name] = [np.asarray(group[n]) for n in names]
        return out


def _layer_variables(layer) -> list:
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def load_weights(model, path) -> str:
    """Put the weights of `path` into `model`, by layer name; every weighted layer must be found with its shapes.

    Returns how they matched: "by name", or "by order" for a file whose layers carry other auto-generated names
    (a model built after others in the same session) but the same weighted layers and shapes in the same order.
    """
    from csrefiner.errors import CsrefinerError

    saved = read_weights(path)
    layers = weighted_layers(model)

    def shapes_fit(layer, arrays) -> bool:
        var = _layer_variables(layer)
        return len(var) == len(arrays) and all(tuple(v.shape) == a.shape for v, a in zip(var, arrays))

    missing = [layer.name for layer in layers if layer.name not in saved]
    if not missing:
        pairs, how = [(layer, saved[layer.name]) for layer in layers], "by name"
    elif len(saved) == len(layers) and all(shapes_fit(lay, arr) for lay, arr in zip(layers, saved.values())):
        pairs, how = list(zip(layers, saved.values())), "by order"
    else:
        raise CsrefinerError(
            f"{path}: not weights of this BCDU-Net: layer(s) "
            f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''} "
            f"missing (file has {len(saved)} weighted layers, the network {len(layers)}); "
            "give a CellBin BCDU-Net .hdf5 "
            "(cellseg_bcdu_SHDI_221008_tf.hdf5 / cellseg_bcdu_H_240823_tf.hdf5) or a csrefiner cellbin model folder"
        )
    for layer, arrays in pairs:
        if not shapes_fit(layer, arrays):
            want = [tuple(v.shape) for v in _layer_variables(layer)]
            raise CsrefinerError(
                f"{path}: layer {layer.name} holds {[a.shape for a in arrays]}, the network needs "
                f"{want}; the file is another width or input-channel count (--option base / channels)"
            )
    for layer, arrays in pairs:
        for var, arr in zip(_layer_variables(layer), arrays):
            var.assign(arr)
    return how


def save_weights(model, path) -> None:
    """Write `model`'s weights in the legacy layout (tf.keras `load_weights(..., by_name=True)` reads it)."""
    import h5py
    import keras
    import numpy as np

    layers = weighted_layers(model)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([layer.name.encode() for layer in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = keras.__version__.encode()
        for layer in layers:
            group = f.create_group(layer.name)
            variables = _layer_variables(layer)
            names = [f"{layer.name}/{v.name}:0" for v in variables]
            group.attrs["weight_names"] = np.array([n.encode() for n in names])
            for name, var in zip(names, variables):
                group.create_dataset(name, data=keras.ops.convert_to_numpy(var))


def file_geometry(path) -> tuple[int, int]:
    """(input channels, first-level filters) of a BCDU-Net weights file, from its first convolution."""
    from csrefiner.errors import CsrefinerError

    saved = read_weights(path)
    first = saved.get("conv2d") or next(iter(saved.values()), None)
    if not first or first[0].ndim != 4:
        raise CsrefinerError(f"{path}: no convolution kernel 'conv2d' in it; not a CellBin BCDU-Net weights file")
    return int(first[0].shape[2]), int(first[0].shape[3])
