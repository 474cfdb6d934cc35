"""Float models in and out: ``.npz`` archives and PyTorch ``state_dict`` files.

A model is a chain of fully connected layers ``y = act(W @ x + b)``, ``W`` of shape
``(n_out, n_in)``. Formats:

- ``.npz``: arrays ``W0, b0, W1, b1, ...`` (``W{l}`` 2-D, ``b{l}`` of shape ``(n_out,)``, biases
  optional per layer). An optional bool array ``relu`` (one per layer) overrides the default
  activation, which is ReLU on every layer but the last (the contract's rule).
- ``.pt`` / ``.pth``: a PyTorch ``state_dict`` of ``Linear`` layers in order (saved with
  ``torch.save(model.state_dict(), path)``; loaded with ``weights_only=True``, never unpickling code):
  2-D ``*.weight`` tensors, each optionally followed by its ``*.bias``. PyTorch is imported only
  here and only for these files (``pip install torch``).

Every check a user can fix raises :class:`EieError` naming the value and the limit: no layers,
non-2-D weights, weights or biases that are not real numbers (strings, complex, bool),
NaN/infinite values, shapes that do not chain, bias of the wrong length; in an ``.npz``, two
arrays for one layer (``W0`` and ``W00``), a missing layer number, and a ``relu`` that is not
one bool (or integer 0/1) per layer.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..common.atomic import atomic_file, save_npz
from ..common.errors import EieError
from .npz_keys import by_number, canonical_number, layer_key_pattern, shown_key

__all__ = ["FloatLayer", "FloatModel", "load_model", "save_model", "validate_layers",
           "load_npz", "load_torch", "layers_from_state_dict"]

_NPZ_KEY = layer_key_pattern("W", "b")
#: dtype kinds of real numbers: float, signed and unsigned integer
_REAL_KINDS = "fiu"


@dataclass
class FloatLayer:
    """One fully connected float layer: ``weight`` (n_out, n_in), ``bias`` (n_out,) or None."""

    weight: np.ndarray
    bias: np.ndarray | None = None
    relu: bool = True       # note: also on by default for the last layer; give relu=False there

    def __post_init__(self) -> None:
        # array-likes (lists, tensors' numpy()) as arrays; the values are checked by
        # validate_layers when the model is compressed
        if not isinstance(self.weight, np.ndarray):
            self.weight = np.asarray(self.weight)
        if self.bias is not None and not isinstance(self.bias, np.ndarray):
            self.bias = np.asarray(self.bias)
        if not isinstance(self.relu, (bool, np.bool_)) and not (
                isinstance(self.relu, (int, np.integer)) and self.relu in (0, 1)):
            raise EieError(f"FloatLayer relu={self.relu!r}: give True or False (ReLU after this "
                           "layer or not)")
        self.relu = bool(self.relu)

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[0])


@dataclass
class FloatModel:
    """A chain of :class:`FloatLayer`; ``source`` names where it came from (for messages)."""

    layers: list[FloatLayer]
    source: str = "model"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_in(self) -> int:
        return self.layers[0].n_in

    @property
    def n_out(self) -> int:
        return self.layers[-1].n_out

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Float reference forward pass (float64) of a batch ``x`` (batch, n_in)."""
        h = np.asarray(x, dtype=np.float64)
        for layer in self.layers:
            h = h @ layer.weight.astype(np.float64).T
            if layer.bias is not None:
                h = h + layer.bias
            if layer.relu:
                h = np.maximum(h, 0.0)
        return h


def validate_layers(layers: Sequence[FloatLayer], source: str = "model") -> None:
    """Raise :class:`EieError` unless ``layers`` is a non-empty chain of finite 2-D layers."""
    if len(layers) == 0:
        raise EieError(f"{source} has no layers (expected arrays W0, b0, W1, ... or Linear weights)")
    for l, layer in enumerate(layers):
        w = layer.weight
        if w.ndim != 2 or w.shape[0] == 0 or w.shape[1] == 0:
            raise EieError(f"{source}: layer {l} weight has shape {w.shape}; expected 2-D (n_out, n_in) "
                           "with both sizes >= 1")
        if w.dtype.kind not in _REAL_KINDS:
            raise EieError(f"{source}: layer {l} weight has dtype {w.dtype}; expected a float array")
        bad = np.size(w) - int(np.count_nonzero(np.isfinite(w)))
        if bad:
            raise EieError(f"{source}: layer {l} weight has {bad} NaN or infinite values "
                           "(every weight must be finite)")
        if layer.bias is not None:
            b = layer.bias
            if b.dtype.kind not in _REAL_KINDS:
                raise EieError(f"{source}: layer {l} bias has dtype {b.dtype}; "
                               f"{_not_real(b.dtype)}: give a float array of shape "
                               f"({w.shape[0]},)")
            if b.shape != (w.shape[0],):
                raise EieError(f"{source}: layer {l} bias has shape {b.shape} but the layer has "
                               f"{w.shape[0]} outputs (expected ({w.shape[0]},))")
            bad = b.size - int(np.count_nonzero(np.isfinite(b)))
            if bad:
                raise EieError(f"{source}: layer {l} bias has {bad} NaN or infinite values "
                               "(every bias must be finite)")
        if l > 0 and layers[l - 1].weight.shape[0] != w.shape[1]:
            raise EieError(f"{source}: layer {l} takes {w.shape[1]} inputs but layer {l - 1} gives "
                           f"{layers[l - 1].weight.shape[0]} outputs (shapes must chain)")


def _not_real(dtype: np.dtype) -> str:
    """Why an array of ``dtype`` (not a float or integer dtype) is not a layer's numbers."""
    if dtype.kind == "c":
        return "complex values are not taken (the EIE computes on real numbers)"
    if dtype.kind == "b":
        return "bools are not taken as numbers (if 0.0 and 1.0 are meant, save them as floats)"
    if dtype.kind in "SUa":
        return "it holds text, not numbers"
    return "expected real numbers"


def _relu_flags(relu: Any, n: int, path: Path) -> list[bool]:
    """An ``.npz`` archive's ``relu`` array as one bool per layer: bools, or integers 0 and 1;
    anything else (text, floats, NaN, 2) is refused rather than read as True."""
    arr = np.asarray(relu)
    what = f"model file {path}: relu"
    rule = "give one bool per layer (True: ReLU after the layer), or integers 1 and 0"
    if arr.dtype.kind not in "biu":
        raise EieError(f"{what} has dtype {arr.dtype}; {rule}")
    flat = arr.reshape(-1)
    if arr.dtype.kind != "b":
        bad = np.flatnonzero((flat != 0) & (flat != 1))
        if bad.size:
            i = int(bad[0])
            raise EieError(f"{what}[{i}] is {flat[i]}, not 0 or 1; {rule}")
    if flat.size != n:
        raise EieError(f"{what} has {flat.size} entries but the model has {n} layers "
                       "(give one bool per layer)")
    return [bool(r) for r in flat]


def _default_relu(n: int) -> list[bool]:
    return [l < n - 1 for l in range(n)]


def load_npz(path: str | Path) -> FloatModel:
    """Load ``W0, b0, W1, ...`` (and optional ``relu``) from an ``.npz`` archive."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise EieError(f"model file {path} does not exist") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise EieError(f"model file {path} is not a readable .npz archive ({exc})") from None
    relu = arrays.pop("relu", None)
    # layer number (its digits without leading zeros, never a huge int) -> (key, array)
    weights: dict[str, tuple[str, np.ndarray]] = {}
    biases: dict[str, tuple[str, np.ndarray]] = {}
    for key, arr in arrays.items():
        m = _NPZ_KEY.match(key)
        if not m:
            raise EieError(f"model file {path}: unexpected array {shown_key(key)!r} "
                           "(expected W0, b0, W1, b1, ... and optionally relu)")
        number = canonical_number(m.group(2))
        table = weights if m.group(1) == "W" else biases
        if number in table:
            first, second = sorted((table[number][0], key), key=by_number)
            raise EieError(f"model file {path}: {shown_key(first)} and {shown_key(second)} are "
                           f"both layer {shown_key(number)}'s "
                           f"{'weight' if m.group(1) == 'W' else 'bias'}; keep one of them "
                           "(layers are W0, W1, ... without leading zeros)")
        table[number] = (key, arr)
    n = len(weights)
    # the numbers are n distinct strings: they are 0..n-1 unless one of those is missing
    missing = next((l for l in range(n) if str(l) not in weights), None)
    if missing is not None:
        last = shown_key(weights[max(weights, key=by_number)][0])
        raise EieError(f"model file {path}: W{missing} is missing (the archive has {n} weight "
                       f"array{'s' if n != 1 else ''}, up to {last}; layers must be "
                       f"W0..W{n - 1} without gaps)")
    extra = sorted((number for number in biases if number not in weights), key=by_number)
    if extra:
        raise EieError(f"model file {path}: {shown_key(biases[extra[0]][0])} has no matching "
                       f"{shown_key('W' + extra[0])} "
                       f"(the model has {n} layer{'s' if n != 1 else ''})")
    relu_list = _default_relu(n) if relu is None else _relu_flags(relu, n, path)
    layers = []
    for l in range(n):
        w = np.asarray(weights[str(l)][1])
        b = biases[str(l)][1] if str(l) in biases else None
        layers.append(FloatLayer(weight=w, bias=None if b is None else np.asarray(b),
                                 relu=relu_list[l]))
    validate_layers(layers, source=f"model file {path}")
    return FloatModel(layers=layers, source=str(path))


def _to_numpy(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach()
    if hasattr(t, "cpu"):
        t = t.cpu()
    if hasattr(t, "float") and hasattr(t, "numpy"):
        t = t.float()
    return np.asarray(t.numpy() if hasattr(t, "numpy") else t)


def layers_from_state_dict(state: Any, source: str = "state_dict") -> list[FloatLayer]:
    """Turn an ordered ``state_dict`` of ``Linear`` layers into :class:`FloatLayer` s.

    Keys are taken in order; a 2-D ``*.weight`` starts a layer and the ``*.bias`` with the same
    prefix is its bias. Anything else (convolutions, batch norm statistics) is an error naming the
    key, since the EIE core runs fully connected layers only.
    """
    items = list(state.items())
    layers: list[FloatLayer] = []
    prefixes: list[str] = []
    for key, value in items:
        arr = _to_numpy(value)
        prefix, _, leaf = key.rpartition(".")
        if leaf == "weight" and arr.ndim == 2:
            layers.append(FloatLayer(weight=arr))
            prefixes.append(prefix)
        elif leaf == "bias" and arr.ndim == 1 and prefixes and prefixes[-1] == prefix \
                and layers[-1].bias is None:
            layers[-1].bias = arr
        else:
            raise EieError(f"{source}: entry {key!r} with shape {tuple(arr.shape)} is not the weight "
                           "or bias of a Linear layer (only fully connected layers, in order, can be "
                           "imported)")
    for l, layer in enumerate(layers):
        layer.relu = l < len(layers) - 1
    validate_layers(layers, source=source)
    return layers


def load_torch(path: str | Path) -> FloatModel:
    """Load a PyTorch ``state_dict`` (or module) of ``Linear`` layers; needs ``torch``."""
    path = Path(path)
    if not path.exists():
        raise EieError(f"model file {path} does not exist")
    try:
        import torch  # noqa: PLC0415 - optional, heavy
    except ImportError:
        raise EieError(f"model file {path} is a PyTorch file but PyTorch is not installed "
                       "(pip install torch, or pip install 'eie[torch]'; or save the weights as "
                       ".npz with W0, b0, W1, ...)") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EieError(f"model file {path} could not be read by torch.load with weights_only=True "
                       f"({first}); save the weights with torch.save(model.state_dict(), path)") from None
    if hasattr(obj, "state_dict"):
        obj = obj.state_dict()
    if not hasattr(obj, "items"):
        raise EieError(f"model file {path} holds a {type(obj).__name__}, not a state_dict of Linear layers")
    layers = layers_from_state_dict(obj, source=f"model file {path}")
    return FloatModel(layers=layers, source=str(path))


def load_model(path: str | Path) -> FloatModel:
    """Load a model by file extension: ``.npz`` or ``.pt``/``.pth``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path)
    if suffix in (".pt", ".pth"):
        return load_torch(path)
    raise EieError(f"model file {path} has extension {suffix!r}; expected .npz (W0, b0, ...) or "
                   ".pt/.pth (PyTorch state_dict)")


def save_model(model: FloatModel | Sequence[FloatLayer], path: str | Path) -> Path:
    """Write ``W0, b0, ...`` and ``relu`` to an ``.npz``, atomically."""
    layers = model.layers if isinstance(model, FloatModel) else list(model)
    validate_layers(layers, source=str(path))
    arrays: dict[str, np.ndarray] = {}
    for l, layer in enumerate(layers):
        arrays[f"W{l}"] = np.asarray(layer.weight)
        if layer.bias is not None:
            arrays[f"b{l}"] = np.asarray(layer.bias)
    arrays["relu"] = np.array([bool(layer.relu) for layer in layers])
    path = Path(path)
    with atomic_file(path, "wb") as f:
        save_npz(f, arrays)
    return path
