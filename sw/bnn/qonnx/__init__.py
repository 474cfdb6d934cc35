"""QONNX import: a graph of fully connected quantized layers (W1/W2 weights, A1..A4
activations), as Brevitas exports it and FINN reads it, to an
:class:`~eie.sw.bnn.params.IntegerBnn` (docs/qonnx.md).

The graph is one chain from its input to its output::

    input -> [Reshape/Flatten, elementwise ops] -> input quantizer (BipolarQuant, 1-bit Quant,
          one-threshold MultiThreshold, Sign) -> MatMul/Gemm -> [per-neuron ops: Add, Mul, Sub,
          Div, BatchNormalization, Relu, Clip ...] -> activation quantizer (two levels, or an
          unsigned 2-4-bit Quant / MultiThreshold) -> MatMul/Gemm -> ... -> output

Anything else is refused with one :class:`~eie.common.errors.EieError` line naming the node and
its op type. ``onnx`` is an optional dependency (``pip install 'eie[onnx]'``), imported on use.

The package, by concern:

- :mod:`.ops`: the QONNX custom ops' semantics (BipolarQuant, Quant, MultiThreshold);
- :mod:`.result`: :class:`QonnxImport`, what the import returns (the input conversion);
- :mod:`.importer`: the tracer that reads the layers' weights and thresholds off the graph
  (how: its docstring);
- :mod:`.load`: reading a model (a path, bytes, a ModelProto) and the entry points
  :func:`import_qonnx`, :func:`load_qonnx`, :func:`looks_like_onnx`, :func:`sniff_onnx`.
"""

from __future__ import annotations

# __all__ is the single module's; its other public names (the op functions, ACT_BITS,
# WEIGHT_BITS) stay importable from here as well
from .importer import ACT_BITS, QONNX_DOMAINS, WEIGHT_BITS
from .load import import_qonnx, load_qonnx, looks_like_onnx, sniff_onnx
from .ops import bipolar_quant, int_quant, int_range, multithreshold
from .result import QonnxImport

__all__ = ["QonnxImport", "import_qonnx", "load_qonnx", "looks_like_onnx", "sniff_onnx",
           "QONNX_DOMAINS"]
