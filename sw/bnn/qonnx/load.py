"""Loading: a QONNX graph from a path, bytes or an ``onnx.ModelProto``, checked to hold a graph
(:func:`import_qonnx`, :func:`load_qonnx`); :func:`sniff_onnx` and :func:`looks_like_onnx` for a
file of any name (the model :func:`sniff_onnx` read goes on to :func:`import_qonnx`, so that the
file is parsed once).
"""

from __future__ import annotations

import os
from pathlib import Path

from ....common.errors import EieError
from ..params import IntegerBnn
from .importer import _Importer, _onnx
from .result import QonnxImport


def _reason(e: Exception) -> str:
    """``"Type: first line of the message"`` of an exception, for a one-line error."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _check_model(model, where: str):
    """``model`` if it holds a graph; an :class:`EieError` otherwise (an empty file, or bytes
    that happen to decode as a protobuf message without a graph)."""
    if not model.HasField("graph") or not (len(model.graph.node) or len(model.graph.input)):
        raise EieError(f"{where}: not an ONNX model (it decodes to a ModelProto without a "
                       f"graph: no nodes, no inputs); export the network with its graph "
                       f"(e.g. Brevitas' export_qonnx, onnx.save)")
    return model


def _load_model(source, sniffed=None):
    """The checked ``ModelProto`` of ``source``; ``sniffed`` is what :func:`sniff_onnx` read from
    the path ``source`` (external data not yet read): only its external data is read here."""
    onnx = _onnx()
    if isinstance(source, onnx.ModelProto):
        return source
    if isinstance(source, (bytes, bytearray)):
        try:
            model = onnx.load_from_string(bytes(source))
        except Exception as e:  # noqa: BLE001 - a protobuf decode error has no common type
            raise EieError(f"the bytes are not an ONNX model ({_reason(e)})") from None
        return _check_model(model, "the bytes")
    path = Path(source)
    if path.is_dir():
        raise EieError(f"{path} is a directory; give an ONNX model file")
    if not path.is_file():
        raise EieError(f"{path}: no such ONNX file")
    if path.stat().st_size == 0:
        raise EieError(f"{path}: the file is empty, not an ONNX model")
    try:
        if sniffed is None:
            model = onnx.load(str(path))
        else:               # what onnx.load(path) does after decoding the bytes
            from onnx.external_data_helper import load_external_data_for_model

            model = sniffed
            load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))
    except Exception as e:  # noqa: BLE001 - a protobuf decode error has no common type
        msg = _reason(e)
        if "should be stored in" in msg or "external" in msg.lower():
            raise EieError(f"{path}: its weights are stored outside the model (external data) "
                           f"and cannot be read ({msg}); keep the data file beside the model "
                           f"under the name it was saved with") from None
        raise EieError(f"{path}: not an ONNX model ({msg})") from None
    return _check_model(model, str(path))


def sniff_onnx(path):
    """The ``onnx.ModelProto`` in the file at ``path`` if the file decodes as an ONNX model with
    a graph (whatever its name), its external data not read (pass it to :func:`import_qonnx`
    as ``sniffed``); None otherwise, and without the ``onnx`` package."""
    try:
        import onnx
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not ONNX
        return None
    if model.HasField("graph") and len(model.graph.node) and len(model.graph.output):
        return model
    return None


def looks_like_onnx(path) -> bool:
    """Whether the file at ``path`` decodes as an ONNX model with a graph (whatever its name);
    False without the ``onnx`` package."""
    return sniff_onnx(path) is not None


def import_qonnx(source, sniffed=None) -> QonnxImport:
    """Read a QONNX graph (a path, bytes or an ``onnx.ModelProto``) of fully connected binarized
    layers: the :class:`IntegerBnn` and the input/output conventions. ``sniffed``: the model
    :func:`sniff_onnx` read from the path ``source``, taken instead of parsing the file again
    (its external data is read here, as for a path)."""
    return _Importer(_load_model(source, sniffed)).run()


def load_qonnx(path) -> IntegerBnn:
    """The :class:`IntegerBnn` (``rule="ge"``) of a QONNX graph; see :func:`import_qonnx` for the
    input conversion (:meth:`QonnxImport.input_bits`)."""
    return import_qonnx(path).net
