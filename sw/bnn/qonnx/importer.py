"""The importer: :class:`_Importer` traces a QONNX graph's one chain of nodes from its input
to its output (the input path, a table of values over each MatMul/Gemm layer's accumulator,
constant sub-graphs folded) and reads the layers' weights and thresholds off the tables.

Weights are constants (initializers, possibly through BipolarQuant/Quant, Transpose, Mul ...;
every constant sub-graph is evaluated) that are ``+-c_j`` (a W1 layer) or ``-c_j, 0, +c_j`` (a
ternary W2 layer, e.g. a 2-bit narrow-range Quant) in every output neuron ``j``.

How a layer becomes a threshold: every node between two MatMuls acts on each neuron alone, and a
neuron's pre-activation only depends on its match count ``m`` (``0..K``; for k-bit inputs, on
its integer dot ``-K*L .. K*L``: the same argument with more rows). So the importer
evaluates those nodes, with the graph's own float32 arithmetic, on a table of all ``K + 1``
possible pre-activations of every neuron, and reads the threshold off the table: the first ``m``
at which the (two-valued) output takes its higher value. A neuron whose output falls as ``m``
rises gets its weights flipped (``m' = K' - m``, ``K'`` its nonzero weights; ``dot' = -dot``).
Whatever the graph computes (batch norm, a weight or activation scale, a bias, ``{0, 1}`` or
``{-1, +1}`` activations, ``>=`` against a threshold, a Quant's rounding), the thresholds
reproduce it exactly, ties included, as long as the MatMul itself is exact in float32 (scales
that are powers of two, or 1, as Brevitas' binary layers have; other scales give the exact
dot's thresholds, which the graph's rounded float32 sum can miss only within its rounding).
Multi-bit activations (a 2-4-bit unsigned Quant, a MultiThreshold of up to 15 steps) are the
same tables with more than two values: the layer's values must lie on one grid ``a + b*q``,
``q = 0..2**k - 1``, ``k <= 4``; the layer becomes an ``A_k`` layer whose thresholds ``T_j`` are
the first accumulator values with ``q >= j`` (on the match count for 1-bit inputs, on the
integer dot for k-bit ones), and the next layer's table is computed from ``a + b*q``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from ....common.errors import EieError
from ..params import IntegerBnn
from .ops import _ROUNDING, bipolar_quant, int_quant, int_range, multithreshold
from .result import QonnxImport


#: The custom-op domains read as QONNX's (``onnx.brevitas``: Brevitas' own export; ``finn.*``:
#: FINN's older name of the same ops).
QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas", "finn")
_STANDARD_DOMAINS = ("", "ai.onnx")

#: Elementwise binary ops applied to a traced tensor and a constant (order kept).
_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}
#: Ops that quantize to a few levels: the activation (and input) quantizers.
_QUANTIZERS = ("BipolarQuant", "Quant", "IntQuant", "MultiThreshold", "Sign")
#: Ops refused with a specific reason.
_CONV_OPS = ("Conv", "ConvTranspose", "Im2Col", "MaxPool", "AveragePool", "GlobalAveragePool",
             "QuantAvgPool2d", "MaxPoolNHWC")
#: Ops that pick or normalize the classes at the graph's end: the host's job in eie.
_CLASS_OPS = ("Softmax", "LogSoftmax", "ArgMax", "TopK", "Hardmax")
#: The widest activation / weight precision this import takes (A4; W2: ternary).
ACT_BITS = 4
WEIGHT_BITS = 2


def _onnx():
    try:
        import onnx
    except ImportError:  # pragma: no cover - depends on the environment
        raise EieError("reading ONNX needs the onnx package: pip install 'eie[onnx]'") from None
    return onnx


# ---------------------------------------------------------------------------------------------
# Tracing
# ---------------------------------------------------------------------------------------------

@dataclass
class _Const:
    value: np.ndarray
    quant: tuple[str, int] | None = None        # (node label, bit width) of a Quant it came from


@dataclass
class _Input:
    """The graph input after some nodes: their effect on a batch, and (after a quantizer) the
    two levels each element takes, as arrays of the traced shape (batch 1)."""
    shape: tuple[int, ...]
    ops: list[Callable[[np.ndarray], np.ndarray]]
    levels: tuple[np.ndarray, np.ndarray] | None = None
    last: str = "the graph input"


@dataclass
class _Layer:
    """Layer ``index``'s output after some per-neuron nodes, as a table ``(rows, n_out)``: row
    ``r`` is every neuron's value at accumulator ``lo + r`` (the match count ``0..K`` for 1-bit
    inputs, the integer dot ``-K*L .. K*L`` for k-bit ones; :class:`_Info`)."""
    index: int
    shape: tuple[int, ...]
    table: np.ndarray
    last: str
    quantizer: str | None = None               # label of the activation quantizer, if any
    history: list = field(default_factory=list)  # (label, fn) applied since the MatMul


@dataclass
class _Info:
    """What the importer knows of layer ``l``'s accumulator."""
    n_in: int
    in_bits: int
    nz: np.ndarray                             # K'_j: nonzero weights of each neuron
    table0: np.ndarray | None                  # the table right after the MatMul (and Gemm)
    label: str                                 # the MatMul/Gemm
    #: the table right after the MatMul for another input encoding (kind, p0, p1)
    make_table: Callable | None = None
    scales: np.ndarray | None = None           # c_j: each output's weight scale
    rowsum: np.ndarray | None = None           # each output's sum of -1/0/+1 weights
    bias: np.ndarray | None = None             # Gemm's beta * C, if any

    @property
    def levels(self) -> int:
        return (1 << self.in_bits) - 1

    @property
    def lo(self) -> int:
        return 0 if self.in_bits == 1 else -self.n_in * self.levels

    @property
    def hi(self) -> int:
        return self.n_in if self.in_bits == 1 else self.n_in * self.levels

    def valid(self) -> np.ndarray:
        """``(rows, n_out)``: the accumulator values each neuron reaches."""
        acc = np.arange(self.lo, self.hi + 1, dtype=np.int64)[:, None]
        if self.in_bits == 1:
            return acc <= self.nz[None, :]
        return np.abs(acc) <= (self.nz * self.levels)[None, :]

    def dot_view(self, table: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """The table as a function of the neuron's dot (eie's output): ``(2D + 1, n_out)``
        values (NaN where unreachable), the reachable mask and ``D``."""
        valid = self.valid()
        if self.in_bits > 1:
            return np.where(valid, table, np.float32(np.nan)), valid, self.hi
        d = self.n_in
        m = np.arange(self.n_in + 1, dtype=np.int64)[:, None]
        rows = 2 * m - self.nz[None, :] + d
        cols = np.broadcast_to(np.arange(table.shape[1])[None, :], rows.shape)
        vals = np.full((2 * d + 1, table.shape[1]), np.nan, dtype=np.float32)
        ok = np.zeros(vals.shape, dtype=bool)
        vals[rows[valid], cols[valid]] = table[valid]
        ok[rows[valid], cols[valid]] = True
        return vals, ok, d


def _label(node) -> str:
    return f"node '{node.name or (node.output[0] if node.output else '?')}' ({node.op_type})"


def _attrs(node) -> dict:
    from onnx import helper
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _orient(vals: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reverse (dot -> -dot) the columns whose last reachable value is below their first."""
    idx = np.arange(vals.shape[0])[:, None]
    first = np.where(ok, idx, vals.shape[0]).min(axis=0)
    last = np.where(ok, idx, -1).max(axis=0)
    cols = np.arange(vals.shape[1])
    top = vals.shape[0] - 1
    falling = vals[np.minimum(last, top), cols] < vals[np.minimum(first, top), cols]
    return np.where(falling[None, :], vals[::-1], vals), falling


def _same_function(vals: np.ndarray, ok: np.ndarray) -> bool:
    """Every column (a function of the dot) the same where reachable, once the falling ones are
    reversed: at one dot every class that reaches it has the same value, and a higher dot (of
    any class) a higher value, so the argmax of the dots is the argmax of the values, ties
    included (classes whose reachable dots never meet, e.g. W2 classes of different ``K'``
    parity, are compared through the order too)."""
    t, falling = _orient(vals, ok)
    ok = np.where(falling[None, :], ok[::-1], ok)
    lo = np.where(ok, t, np.inf).min(axis=1)
    hi = np.where(ok, t, -np.inf).max(axis=1)
    some = ok.any(axis=1)
    lo, hi = lo[some], hi[some]
    return bool(np.all(lo == hi) and np.all(hi[:-1] < lo[1:]))


def _show(values, n: int = 8) -> str:
    """Distinct values, as integer multiples of the smallest nonzero magnitude when they are."""
    v = np.unique(np.asarray(values, dtype=np.float64))
    nzv = np.abs(v[v != 0])
    more = ", ..." if v.size > n else ""
    if nzv.size:
        unit = nzv.min()
        r = v / unit
        if np.all(r == np.round(r)):
            return (f"({', '.join(str(int(x)) for x in r[:n])}{more}) x {unit:g}")
    return f"({', '.join(f'{x:g}' for x in v[:n])}{more})"


class _Importer:
    def __init__(self, model):
        self.onnx = _onnx()
        from onnx import numpy_helper
        self.np_helper = numpy_helper
        self.model = model
        self.graph = model.graph
        self.opsets = {o.domain: o.version for o in model.opset_import}
        self.weights: list[np.ndarray] = []
        self.thresholds: list[np.ndarray | None] = []
        self.info: list[_Info] = []
        self.act_bits: list[int] = []
        self.act_levels: list[tuple[float, float]] = []
        self.env: dict[str, object] = {}
        self.input_levels: tuple[float, float] | None = None
        self.input_ops: list = []
        self.input_shape: tuple[int, ...] = ()
        self.input_annotation: tuple[float, float] | None = None

    # -- graph ---------------------------------------------------------------------------------

    def run(self) -> QonnxImport:
        g = self.graph
        for init in g.initializer:
            self.env[init.name] = _Const(self.np_helper.to_array(init))
        inputs = [i for i in g.input if i.name not in self.env]
        if len(inputs) != 1:
            raise EieError(f"the graph has {len(inputs)} inputs "
                           f"({', '.join(i.name for i in inputs) or 'none'}); eie's BNN takes one")
        if len(g.output) != 1:
            raise EieError(f"the graph has {len(g.output)} outputs; eie's BNN gives one")
        inp = inputs[0]
        dims = inp.type.tensor_type.shape.dim
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
                      for d in dims)
        if not dims:
            raise EieError(f"graph input '{inp.name}' has no shape; eie needs its size")
        self.input_shape = shape
        self.input_name = inp.name
        self.outputs = {o.name for o in g.output}
        self.env[inp.name] = _Input(shape=shape, ops=[])
        annot = self._annotation(inp.name)
        if annot is not None:
            self.env[inp.name].levels = annot
            self.input_annotation = (float(annot[0].flat[0]), float(annot[1].flat[0]))
        self._check_chain()
        # the tensors from which a MatMul/Gemm is reached (a node whose outputs are not among
        # them comes after the last layer)
        self.feeds_layer: set[str] = set()
        for node in reversed(g.node):
            if node.op_type in ("MatMul", "Gemm") or any(o in self.feeds_layer
                                                          for o in node.output):
                self.feeds_layer.update(n for n in node.input if n)
        for node in g.node:
            self._node(node)
        out = self.env.get(g.output[0].name)
        if not isinstance(out, _Layer):
            raise EieError("the graph has no MatMul/Gemm layer between its input and output")
        result = self._finish_last(out)
        bits = [2 if np.any(w == 0) else 1 for w in self.weights]
        net = IntegerBnn(self.weights, self.thresholds, "ge", bits, self.act_bits + [1]).validate()
        return QonnxImport(net=net, input_shape=self.input_shape, input_levels=self.input_levels,
                           act_levels=self.act_levels, _input_ops=self.input_ops,
                           input_name=self.input_name, input_annotation=self.input_annotation,
                           **result)

    def _annotation(self, name: str):
        """An input annotated BIPOLAR/BINARY (FINN's quantization_annotation) is already
        quantized."""
        for qa in self.graph.quantization_annotation:
            if qa.tensor_name != name:
                continue
            for kv in qa.quant_parameter_tensor_names:
                if kv.key == "finn_datatype":
                    levels = {"BIPOLAR": (-1.0, 1.0), "BINARY": (0.0, 1.0)}.get(kv.value)
                    if levels is not None:
                        sh = self.input_shape
                        return (np.full(sh, levels[0], np.float32), np.full(sh, levels[1], np.float32))
        return None

    def _check_chain(self):
        """The traced tensors form one chain: no tensor of it feeds two nodes (Shape nodes, which
        read only its static shape, aside)."""
        consumers: dict[str, list] = {}
        for node in self.graph.node:
            for name in node.input:
                if name:
                    consumers.setdefault(name, []).append(node)
        # a tensor is traced if it depends on the graph input; find them in node order
        traced = {self.input_name: None}                        # ordered
        for node in self.graph.node:
            if node.op_type != "Shape" and any(n in traced for n in node.input):
                traced.update((o, None) for o in node.output if o)
        for name in traced:
            users = [n for n in consumers.get(name, []) if n.op_type != "Shape"]
            if len(users) > 1:
                raise EieError(f"{_label(users[1])}: tensor '{name}' also feeds "
                               f"{_label(users[0])}; eie's BNN runs one chain of layers (no branches)")

    # -- nodes ---------------------------------------------------------------------------------

    def _node(self, node):
        label = _label(node)
        ins = [self.env.get(n) if n else None for n in node.input]
        for n, v in zip(node.input, ins):
            if n and v is None:
                raise EieError(f"{label}: input '{n}' is not produced by any earlier node")
        if node.domain not in _STANDARD_DOMAINS and node.domain not in QONNX_DOMAINS:
            raise EieError(f"{label}: custom op of domain '{node.domain}' is not a QONNX op "
                           f"eie knows ({', '.join(QONNX_DOMAINS)})")
        if node.op_type == "Shape" and isinstance(ins[0], (_Input, _Layer)):
            a = _attrs(node)
            shape = np.array(ins[0].shape, dtype=np.int64)[a.get("start", 0):a.get("end")]
            self.env[node.output[0]] = _Const(shape)
            return
        traced = [i for i, v in enumerate(ins) if isinstance(v, (_Input, _Layer))]
        if not traced:
            self._fold(node, ins, label)
            return
        if node.op_type in _CONV_OPS:
            raise EieError(f"{label}: eie's BNN core runs fully connected layers only")
        if len(traced) > 1:
            raise EieError(f"{label}: combines two computed tensors; eie's BNN runs one chain "
                           f"of fully connected layers")
        pos = traced[0]
        sym = ins[pos]
        if node.op_type in _CLASS_OPS and isinstance(sym, _Layer) and not any(
                o in self.feeds_layer for o in node.output):
            what = {"TopK": "picks the top classes (FINN's InsertTopK)",
                    "ArgMax": "picks the class"}.get(node.op_type, "normalizes the class scores "
                                                                   "(monotone: the argmax is the "
                                                                   "same)")
            raise EieError(f"{label}: {what} after the last layer, which eie leaves to the host: "
                           f"remove it (and the nodes after it) from the graph; eie's output "
                           f"layer outputs the dots and `eie bnn golden|run --classes argmax` "
                           f"saves their argmax (Python: eie.sw.bnn.golden.classify(y, "
                           f"'argmax'))")
        consts = [v.value if isinstance(v, _Const) else None for v in ins]
        outs = [o for o in node.output if o]
        if len(outs) != 1:
            raise EieError(f"{label}: has {len(outs)} outputs; eie reads one-output nodes only "
                           f"(BatchNormalization in inference mode)")
        op = node.op_type
        if op in ("MatMul", "Gemm"):
            out = self._matmul(node, label, sym, pos, ins)
        elif op in ("Reshape", "Flatten", "Identity", "Dropout", "Squeeze", "Unsqueeze",
                    "Transpose"):
            out = self._shape_op(node, label, sym, consts)
        elif op in _QUANTIZERS:
            out = self._quantizer(node, label, sym, pos, consts)
        elif op in _BINARY or op in ("Neg", "BatchNormalization", "Relu", "Clip"):
            out = self._elementwise(node, label, sym, pos, consts)
        else:
            raise EieError(f"{label}: op not supported by eie's QONNX import (fully connected "
                           f"quantized layers: MatMul/Gemm, BipolarQuant/Quant, MultiThreshold, "
                           f"BatchNormalization, Sign, Relu, Clip, elementwise Add/Sub/Mul/Div)")
        self.env[outs[0]] = out
        if isinstance(sym, _Layer) and node.input[pos] not in self.outputs:
            # consumed (one chain: only Shape nodes read it again); its table is not needed
            self.env[node.input[pos]] = replace(sym, table=None)

    def _fold(self, node, ins, label):
        """A node of constants only: evaluate it."""
        vals = [v.value if v is not None else None for v in ins]
        quant = next((v.quant for v in ins if isinstance(v, _Const) and v.quant), None)
        a = _attrs(node)
        op = node.op_type
        if node.domain in QONNX_DOMAINS:
            if op == "BipolarQuant":
                out, quant = bipolar_quant(vals[0], vals[1]), (label, 1)
            elif op in ("Quant", "IntQuant"):
                bits = self._bits(label, vals[3])
                if bits > 1:
                    self._zero_point(label, vals[2], "weights")
                out = int_quant(vals[0], vals[1], vals[2], bits, bool(a.get("signed", 1)),
                                bool(a.get("narrow", 0)), self._rounding(label, a))
                quant = (label, bits)
            elif op == "MultiThreshold":
                out = multithreshold(vals[0], vals[1], a.get("out_scale", 1.0),
                                     a.get("out_bias", 0.0),
                                     str(a.get("data_layout", "NCHW")).endswith("C"))
            else:
                raise EieError(f"{label}: QONNX op not supported by eie's import")
            self.env[node.output[0]] = _Const(np.asarray(out), quant)
            return
        from onnx import helper
        from onnx.reference import ReferenceEvaluator
        names = [n for n in node.input if n]
        g = helper.make_graph([node], "fold", [helper.make_tensor_value_info(n, 0, None) for n in names],
                              [helper.make_tensor_value_info(o, 0, None) for o in node.output if o])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v)
                                                for d, v in self.opsets.items()
                                                if d in _STANDARD_DOMAINS])
        try:
            res = ReferenceEvaluator(m).run(None, {n: v.value for n, v in
                                                   zip(node.input, ins) if n})
        except Exception as e:  # noqa: BLE001 - any failure is the node's
            raise EieError(f"{label}: cannot evaluate this constant node "
                           f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        for o, r in zip([o for o in node.output if o], res):
            self.env[o] = _Const(np.asarray(r), quant)

    @staticmethod
    def _bits(label, bitwidth) -> int:
        b = np.asarray(bitwidth).reshape(-1)
        if b.size != 1 or b[0] != np.round(b[0]) or b[0] < 1:
            raise EieError(f"{label}: bit width {np.asarray(bitwidth).tolist()!r} is not one "
                           f"positive integer")
        return int(b[0])

    @staticmethod
    def _zero_point(label, z, what) -> None:
        z = np.asarray(z, dtype=np.float64)
        if np.any(z != 0):
            raise EieError(f"{label}: zero point {_show(z)} of a multi-bit Quant of {what}; eie "
                           f"reads multi-bit Quant with zero_point 0 (symmetric levels)")

    @staticmethod
    def _rounding(label, a) -> str:
        r = str(a.get("rounding_mode", "ROUND")).upper()
        if r not in _ROUNDING:
            raise EieError(f"{label}: rounding mode {r!r} is not one of {', '.join(_ROUNDING)}")
        return r

    # -- per-node handlers -----------------------------------------------------------------

    def _consts(self, label, consts, pos, what):
        for i, c in enumerate(consts):
            if i != pos and c is None:
                raise EieError(f"{label}: {what} must be constants (initializers)")

    def _apply(self, label, sym, fn, params_shapes=(), quantizer=False):
        """Apply an elementwise ``fn`` to a traced tensor: record it on the input path, or
        evaluate it on a layer's table."""
        for s in params_shapes:
            try:
                ok = np.broadcast_shapes(sym.shape, s) == tuple(sym.shape)
            except ValueError:
                ok = False
            if not ok:
                raise EieError(f"{label}: a parameter of shape {tuple(s)} does not apply "
                               f"per element to its input of shape {tuple(sym.shape)}")
        if isinstance(sym, _Input):
            levels = sym.levels
            if levels is not None:
                levels = (fn(levels[0]), fn(levels[1]))
            return _Input(sym.shape, sym.ops + [fn], levels, label)
        table = fn(sym.table).astype(np.float32)
        return _Layer(sym.index, sym.shape, table, label,
                      label if quantizer else sym.quantizer, sym.history + [(label, fn)])

    def _elementwise(self, node, label, sym, pos, consts):
        op = node.op_type
        if op == "Neg":
            return self._apply(label, sym, np.negative)
        if op == "Relu":
            return self._apply(label, sym, lambda x: np.maximum(x, np.zeros((), x.dtype)))
        if op == "Clip":
            a = _attrs(node)
            if pos != 0:
                raise EieError(f"{label}: clips a constant by a computed tensor")
            self._consts(label, [c if i == 0 or node.input[i] else 0
                                 for i, c in enumerate(consts)], 0, "its bounds")
            lo = consts[1] if len(consts) > 1 and node.input[1] else a.get("min")
            hi = consts[2] if len(consts) > 2 and node.input[2] else a.get("max")

            def clip(x, lo=lo, hi=hi):
                if lo is not None:
                    x = np.maximum(x, np.asarray(lo, dtype=x.dtype))
                if hi is not None:
                    x = np.minimum(x, np.asarray(hi, dtype=x.dtype))
                return x
            return self._apply(label, sym, clip, [np.shape(v) for v in (lo, hi) if v is not None])
        if op == "BatchNormalization":
            if pos != 0:
                raise EieError(f"{label}: normalizes a constant by a computed tensor")
            self._consts(label, consts, 0, "its scale, bias, mean and variance")
            a = _attrs(node)
            if a.get("training_mode", 0):
                raise EieError(f"{label}: training mode; export the graph for inference")
            eps = float(a.get("epsilon", 1e-5))
            dt = np.float32
            s, b, mu, var = (np.asarray(c, dtype=dt) for c in consts[1:5])
            chan = sym.shape[1] if len(sym.shape) > 1 else 1
            for p in (s, b, mu, var):
                if p.size not in (1, chan):
                    raise EieError(f"{label}: {p.size} parameters for {chan} channels")

            def bn(x, s=s, b=b, mu=mu, var=var):   # ONNX: s * (x - mean) / sqrt(var + eps) + b
                r = (-1,) + (1,) * (x.ndim - 2)
                return (s.reshape(r) * (x - mu.reshape(r)) / np.sqrt(var.reshape(r) + eps)
                        + b.reshape(r)).astype(x.dtype)
            return self._apply(label, sym, bn)
        self._consts(label, consts, pos, "the other operand")
        c = np.asarray(consts[1 - pos], dtype=np.float32)
        f = _BINARY[op]
        fn = (lambda x, c=c, f=f: f(x, c)) if pos == 0 else (lambda x, c=c, f=f: f(c, x))
        if op == "Div" and pos == 1:
            fn.nonmonotone = label              # c / x: not monotone across x = 0
        return self._apply(label, sym, fn, [c.shape])

    def _quantizer(self, node, label, sym, pos, consts):
        op = node.op_type
        if pos != 0:
            raise EieError(f"{label}: quantizes a constant with computed parameters")
        self._consts(label, consts, 0, "its parameters")
        a = _attrs(node)
        if op == "BipolarQuant":
            s = np.asarray(consts[1], dtype=np.float32)
            fn = lambda x, s=s: bipolar_quant(x, s)  # noqa: E731
            nominal = (-1.0, 1.0)
            post = lambda q, s=s: np.float32(q) * s   # noqa: E731
            shapes = [s.shape]
        elif op in ("Quant", "IntQuant"):
            bits = self._bits(label, consts[3])
            signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
            if bits > 1 and isinstance(sym, _Input):
                raise EieError(f"{label}: {bits}-bit input; eie's BNN core takes 1-bit (binary) "
                               f"network inputs (quantize the input with BipolarQuant, a 1-bit "
                               f"Quant or a one-threshold MultiThreshold)")
            if bits > ACT_BITS:
                raise EieError(f"{label}: {bits}-bit activations; eie's BNN core runs activations "
                               f"of 1 to {ACT_BITS} bits")
            if bits > 1 and signed:
                raise EieError(f"{label}: signed {bits}-bit activations (signed=1); eie's k-bit "
                               f"activations are unsigned, 0..2^k-1 (quantize with signed=0, "
                               f"e.g. after a Relu)")
            if bits > 1:
                self._zero_point(label, consts[2], "activations")
            rnd = self._rounding(label, a)
            s, z = (np.asarray(c, dtype=np.float32) for c in consts[1:3])
            fn = lambda x, s=s, z=z: int_quant(x, s, z, bits, signed, narrow, rnd)  # noqa: E731
            nominal = (-1.0, 1.0) if signed else int_range(False, narrow, bits)
            post = lambda q, s=s, z=z: (np.float32(q) - z) * s  # noqa: E731
            shapes = [s.shape, z.shape]
        elif op == "MultiThreshold":
            t = np.asarray(consts[1], dtype=np.float32)
            if t.ndim != 2:
                raise EieError(f"{label}: thresholds of shape {t.shape}; expected (channels, steps)")
            if t.shape[1] > 1 and isinstance(sym, _Input):
                raise EieError(f"{label}: {t.shape[1]} thresholds per channel (multi-bit input); "
                               f"eie's BNN core takes 1-bit (binary) network inputs (one "
                               f"threshold)")
            if t.shape[1] > 2 ** ACT_BITS - 1:
                raise EieError(f"{label}: {t.shape[1]} thresholds per channel; eie's BNN core "
                               f"runs activations of at most {ACT_BITS} bits "
                               f"({2 ** ACT_BITS - 1} thresholds)")
            if t.shape[1] < 1:
                raise EieError(f"{label}: no thresholds; its output is constant")
            last = str(a.get("data_layout", "NCHW")).endswith("C")
            chan = sym.shape[-1 if last else 1] if len(sym.shape) > 1 else 1
            if t.shape[0] not in (1, chan):
                raise EieError(f"{label}: thresholds for {t.shape[0]} channels, the input has {chan}")
            sc, bi = float(a.get("out_scale", 1.0)), float(a.get("out_bias", 0.0))
            top = sc * t.shape[1] + bi
            signed = str(a.get("out_dtype", "")).startswith("INT")
            if t.shape[1] > 1 and (min(bi, top) < 0 or signed):
                raise EieError(f"{label}: signed multi-bit activations (levels {bi:g} .. {top:g}, "
                               f"out_dtype {a.get('out_dtype', '?')}); eie's k-bit activations "
                               f"are unsigned, 0..2^k-1")
            fn = lambda x, t=t, sc=sc, bi=bi, last=last: multithreshold(x, t, sc, bi, last)  # noqa: E731
            nominal = (0, 1)
            post = lambda q, sc=sc, bi=bi: sc * np.float32(q) + bi  # noqa: E731
            shapes = []
        else:                                                      # Sign
            fn, nominal, post, shapes = np.sign, (-1.0, 1.0), (lambda q: np.float32(q)), []
            if isinstance(sym, _Input):
                fn = lambda x: np.sign(x)  # noqa: E731
                fn.nonmonotone = label          # Sign(0) = 0: a third level at the boundary
        if isinstance(sym, _Layer) and op == "Sign" and np.any(sym.table == 0):
            m, j = np.argwhere(sym.table == 0)[0]
            raise EieError(f"{label}: neuron {j}'s input is exactly 0 at {m} matches and ONNX "
                           f"Sign(0) is 0, a third level; use BipolarQuant (sign(0) = +1)")
        if isinstance(sym, _Input) and sym.levels is None:
            out = self._apply(label, sym, fn, shapes)
            lv = [np.broadcast_to(np.asarray(post(q), dtype=np.float32), sym.shape).copy()
                  for q in nominal]
            if np.all(lv[0] == lv[1]):
                raise EieError(f"{label}: has one output level; its output is constant")
            out.levels = (lv[0], lv[1])
            return out
        return self._apply(label, sym, fn, shapes, quantizer=True)

    def _shape_op(self, node, label, sym, consts):
        op = node.op_type
        a = _attrs(node)
        shape = tuple(sym.shape)
        if op in ("Identity", "Dropout"):
            new = shape
        elif op == "Flatten":
            ax = a.get("axis", 1)
            ax = ax + len(shape) if ax < 0 else ax
            new = (int(np.prod(shape[:ax])), int(np.prod(shape[ax:])))
        elif op == "Reshape":
            if consts[1] is None:
                raise EieError(f"{label}: its target shape is computed, not constant")
            tgt = [int(v) for v in np.asarray(consts[1]).reshape(-1)]
            if not a.get("allowzero", 0):
                tgt = [shape[i] if v == 0 and i < len(shape) else v for i, v in enumerate(tgt)]
            try:
                new = np.empty(shape, dtype=np.int8).reshape(tgt).shape
            except ValueError:
                raise EieError(f"{label}: cannot reshape {shape} to {tuple(tgt)}") from None
        elif op in ("Squeeze", "Unsqueeze"):
            axes = a.get("axes")
            if axes is None and len(node.input) > 1 and node.input[1]:
                if consts[1] is None:
                    raise EieError(f"{label}: its axes are computed, not constant")
                axes = [int(v) for v in np.asarray(consts[1]).reshape(-1)]
            if op == "Squeeze":
                axes = [i for i, d in enumerate(shape) if d == 1] if axes is None else \
                    [x % len(shape) for x in axes]
                new = tuple(d for i, d in enumerate(shape) if i not in axes)
            else:
                new = list(shape)
                for x in sorted(v % (len(shape) + len(axes)) for v in axes):
                    new.insert(x, 1)
                new = tuple(new)
        else:                                                      # Transpose
            perm = tuple(a.get("perm", reversed(range(len(shape)))))
            new = tuple(shape[p] for p in perm)
            if isinstance(sym, _Input) and perm[0] == 0:
                return self._relayout(label, sym, new, lambda x, p=perm: np.transpose(x, p))
        if isinstance(sym, _Input) and (not new or new[0] != shape[0]):
            raise EieError(f"{label}: reshapes {shape} to {new}, across the batch axis")
        if isinstance(sym, _Layer):
            if int(np.prod(new)) != shape[-1] or new[-1] != shape[-1]:
                raise EieError(f"{label}: reshapes a layer's output {shape} to {new}; eie's BNN "
                               f"layers are vectors")
            return _Layer(sym.index, new, sym.table, label, sym.quantizer, sym.history)
        return self._relayout(label, sym, new,
                              lambda x, n=new: x.reshape((x.shape[0],) + tuple(n[1:])))

    @staticmethod
    def _relayout(label, sym, new, fn):
        levels = None if sym.levels is None else (fn(sym.levels[0]), fn(sym.levels[1]))
        fn.relayout = True                      # moves elements (InputConversion's order)
        return _Input(tuple(new), sym.ops + [fn], levels, label)

    def _matmul(self, node, label, sym, pos, ins):
        a = _attrs(node)
        if pos != 0:
            raise EieError(f"{label}: multiplies a constant by computed activations from the "
                           f"right; eie expects activations @ weights")
        w = ins[1]
        if not isinstance(w, _Const):
            raise EieError(f"{label}: its weights are computed, not constant")
        wm = np.asarray(w.value, dtype=np.float64)
        alpha, beta, bias = 1.0, 1.0, None
        if node.op_type == "Gemm":
            if a.get("transA", 0):
                raise EieError(f"{label}: transA=1; eie expects activations of shape (1, n_in)")
            if a.get("transB", 0):
                wm = wm.T
            alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
            if len(ins) > 2 and ins[2] is not None:
                if not isinstance(ins[2], _Const):
                    raise EieError(f"{label}: its bias C is computed, not constant")
                bias = np.asarray(ins[2].value, dtype=np.float32)
        if wm.ndim != 2:
            raise EieError(f"{label}: weights of shape {wm.shape}; expected a matrix")
        n_in, n_out = wm.shape
        shape = tuple(sym.shape)
        if shape not in ((1, n_in),) + (((n_in,),) if node.op_type == "MatMul" else ()):
            if len(shape) == 2 and shape[1] == n_in:
                raise EieError(f"{label}: input of shape {shape}: a fixed batch of {shape[0]}; "
                               f"eie's layers take one sample, (1, {n_in}): export the graph "
                               f"with a batch dimension of 1 or a dynamic one (e.g. 'N')")
            raise EieError(f"{label}: input of shape {shape} for weights {wm.shape}; eie's layers "
                           f"take (1, {n_in}) (flatten the input first: Flatten or Reshape to "
                           f"(batch, {n_in}))")
        # the weights: -c_j, 0, +c_j in every output j (W1 without a 0, W2 with)
        mag = np.abs(wm)
        c = mag.max(axis=0)
        bad = (mag != 0) & (mag != c[None, :])
        if np.any(bad):
            j = int(np.argwhere(bad)[0][1])
            if w.quant is not None:
                where = f"{w.quant[0]}: {w.quant[1]}-bit weights"
            else:
                where = f"{label}: weights"
            raise EieError(f"{where} of output {j} take {np.unique(wm[:, j]).size} values "
                           f"{_show(wm[:, j])}; eie's BNN core runs bipolar or ternary weights, "
                           f"-c, 0, +c per output (binarize with BipolarQuant, ternarize with a "
                           f"2-bit narrow-range Quant; no W3+)")
        t = np.sign(wm).astype(np.int8)                           # (n_in, n_out)
        c = np.where(c == 0, 1.0, c)
        nz = np.count_nonzero(t, axis=0).astype(np.int64)
        rowsum = t.sum(axis=0, dtype=np.float64)[None, :]
        if node.op_type == "Gemm" and bias is not None and beta != 0:
            try:
                ok = np.broadcast_shapes((1, n_out), bias.shape) == (1, n_out)
            except ValueError:
                ok = False
            if not ok:
                raise EieError(f"{label}: bias C of shape {bias.shape} for {n_out} outputs")

        def make_table(kind, p0, p1, c=c, nz=nz, rowsum=rowsum, n_in=n_in, gemm=node.op_type
                       == "Gemm", alpha=alpha, beta=beta, bias=bias):
            """The layer's table right after the MatMul (and Gemm's alpha, bias) for inputs
            encoded as ``(kind, p0, p1)`` (:meth:`_finish_input`)."""
            if kind == 1:
                # inputs v0 + (v1 - v0) * bit: y_j = c_j * (half * dot + mid * rowsum_j),
                # exactly, dot = 2m - K'_j at match count m
                mid, half = (p0 + p1) / 2.0, (p1 - p0) / 2.0
                acc = np.arange(n_in + 1, dtype=np.float64)[:, None]
                table = c[None, :] * (half * (2.0 * acc - nz[None, :]) + mid * rowsum)
            else:
                # inputs a + b * q, q = 0..L: y_j = c_j * (b * dot + a * rowsum_j)
                span = n_in * ((1 << kind) - 1)
                acc = np.arange(-span, span + 1, dtype=np.float64)[:, None]
                table = c[None, :] * (p1 * acc + p0 * rowsum)
            table = table.astype(np.float32)
            if gemm:
                table = table * np.float32(alpha)
                if bias is not None and beta != 0:
                    table = table + bias * np.float32(beta)
                table = table.astype(np.float32)
            return table

        # the input encoding: two values, or a grid a + b*q of k-bit levels
        kind, p0, p1 = self._finish_input(label, sym)
        table = make_table(kind, p0, p1)
        self.weights.append(t.T.copy())
        self.thresholds.append(None)
        info = _Info(n_in, kind, nz, table, label)
        info.make_table = make_table
        info.scales = c
        info.rowsum = rowsum.reshape(-1)
        info.bias = (bias * np.float32(beta)).reshape(-1) if (bias is not None and beta != 0) \
            else None
        self.info.append(info)
        return _Layer(len(self.weights) - 1, shape[:-1] + (n_out,), table, label)

    def _finish_input(self, label, sym) -> tuple[int, float, float]:
        """The encoding of the MatMul's input, ``(1, v0, v1)`` (two levels) or ``(k, a, b)``
        (k-bit levels ``a + b*q``); finishes the previous layer (its thresholds) or the input
        path (its conversion)."""
        if isinstance(sym, _Layer):
            return self._finish_hidden(sym, label)
        if sym.levels is None:
            raise EieError(f"{label}: the graph input reaches it unquantized; eie's BNN takes "
                           f"binary inputs (quantize with BipolarQuant or a one-threshold "
                           f"MultiThreshold, or annotate the input BIPOLAR/BINARY)")
        lo = np.minimum(sym.levels[0], sym.levels[1]).reshape(-1)
        hi = np.maximum(sym.levels[0], sym.levels[1]).reshape(-1)
        if np.any(lo != lo[0]) or np.any(hi != hi[0]):
            raise EieError(f"{sym.last}: the input elements are quantized to different levels "
                           f"(per-element scale); eie's BNN takes one pair of levels")
        if lo[0] == hi[0]:
            raise EieError(f"{sym.last}: the quantized input is constant {float(lo[0]):g}")
        self.input_levels = (float(lo[0]), float(hi[0]))
        self.input_ops = sym.ops
        return 1, float(lo[0]), float(hi[0])

    def _grid(self, lay: _Layer, consumer: str):
        """The layer's activation levels: ``(k, a, b, codes)``, the graph value ``a + b*q`` of
        every level ``q`` and the level of every table entry (reachable ones)."""
        info = self.info[lay.index]
        valid = info.valid()
        vals = np.unique(lay.table[valid])
        name = lay.quantizer or lay.last
        if len(vals) < 2:
            # a constant layer (every neuron outputs v; the float model's constant neurons, all
            # of them): two levels, one of them v, with v's bit everywhere. (-|v|, |v|) keeps
            # the next layer's pre-activation c_j * v * rowsum_j free of an offset; v = 0 is
            # {0, 1} with bit 0 (an output layer after it re-encodes it, _finish_last)
            v = float(vals[0])
            if v == 0:
                return 1, 0.0, 1.0, np.zeros(lay.table.shape, dtype=np.int64)
            return 1, -abs(v), 2 * abs(v), np.full(lay.table.shape, int(v > 0), dtype=np.int64)
        if len(vals) == 2:
            return 1, float(vals[0]), float(vals[1] - vals[0]), \
                (lay.table == vals[1]).astype(np.int64)
        if lay.quantizer is None:
            raise EieError(f"{name}: layer {lay.index}'s activations take {len(vals)} values "
                           f"before {consumer} and no quantizer made them; eie's BNN core runs "
                           f"1- to {ACT_BITS}-bit activations (quantize with BipolarQuant, a Quant "
                           f"of 1 to {ACT_BITS} bits or a MultiThreshold)")
        v = vals.astype(np.float64)
        a = v[0]
        tol = 8 * float(np.finfo(np.float32).eps) * float(np.abs(v).max())
        dmin = float(np.diff(v).min())
        levels = (1 << ACT_BITS) - 1
        for n in range(1, levels + 1):
            q = np.rint((v - a) / (dmin / n))
            if q[-1] > levels:
                break
            b = (v[-1] - a) / q[-1]
            if tol < b / 4 and np.all(np.abs(a + q * b - v) <= tol):
                break
        else:
            q = None
        if q is None or q[-1] > levels:
            raise EieError(f"{name}: layer {lay.index}'s activations take {len(vals)} values "
                           f"{_show(vals)} before {consumer}, not one grid a + b*q of at most "
                           f"{levels + 1} levels; eie's BNN core runs 1- to {ACT_BITS}-bit "
                           f"unsigned activations, one step b a layer")
        k = max(2, int(q[-1]).bit_length())
        idx = np.clip(np.searchsorted(vals, lay.table), 0, len(vals) - 1)
        return k, float(a), float(b), q.astype(np.int64)[idx]

    def _set_thresholds(self, lay: _Layer, k: int, codes: np.ndarray) -> None:
        """Layer ``lay.index``'s thresholds (``acc >= T_j``: the first reachable accumulator
        value at which the level is ``j`` or more), flipping falling neurons."""
        info = self.info[lay.index]
        valid = info.valid()
        d = np.diff(codes, axis=0)
        both = valid[1:] & valid[:-1]
        rising = np.all((d >= 0) | ~both, axis=0)
        falling = np.all((d <= 0) | ~both, axis=0)
        if not np.all(rising | falling):
            j = int(np.argwhere(~(rising | falling))[0][0])
            raise EieError(f"{lay.quantizer or lay.last}: neuron {j} of layer {lay.index} is not "
                           f"a monotone function of its dot; not thresholds")
        flip = falling & ~rising
        rows = codes.shape[0]
        r = np.arange(rows, dtype=np.int64)[:, None]
        if info.in_bits == 1:                                   # m' = K'_j - m
            src = np.where(flip[None, :], info.nz[None, :] - r, r)
            vlo, vhi = np.zeros_like(info.nz), info.nz
        else:                                                   # dot' = -dot
            src = np.where(flip[None, :], rows - 1 - r, r)
            vhi = info.nz * info.levels
            vlo = -vhi
        oriented = np.take_along_axis(codes, np.clip(src, 0, rows - 1), axis=0)
        lo, hi = info.lo, info.hi
        t = np.empty((codes.shape[1], (1 << k) - 1), dtype=np.int64)
        for j in range(1, t.shape[1] + 1):
            count = ((oriented >= j) & valid).sum(axis=0)
            first = vhi + 1 - count
            tj = np.where(count > 0, first, hi + 1)
            t[:, j - 1] = np.where((count > 0) & (first == vlo), lo, tj)
        self.weights[lay.index][flip] *= -1
        self.thresholds[lay.index] = t[:, 0].copy() if k == 1 else t

    def _finish_hidden(self, lay: _Layer, consumer: str) -> tuple[int, float, float]:
        k, a, b, codes = self._grid(lay, consumer)
        self._set_thresholds(lay, k, codes)
        self.info[lay.index].table0 = None                      # only the last layer's is read
        self.act_bits.append(k)
        self.act_levels.append((a, b))
        return (1, a, a + b) if k == 1 else (k, a, b)

    def _finish_last(self, lay: _Layer) -> dict:
        info = self.info[lay.index]
        if lay.quantizer is not None:
            k, a, b, codes = self._grid(lay, "the graph output")
            if k > 1:
                raise EieError(f"{lay.quantizer}: the output layer's activations take more than "
                               f"two values ({k}-bit); eie's output layer outputs bits (a "
                               f"two-level quantizer) or its dots (no quantizer)")
            self._set_thresholds(lay, 1, codes)
            vals = np.unique(lay.table[info.valid()])
            return {"output_levels": (float(vals[0]), float(vals[1]))}
        table = lay.table
        vals, ok, dmax = info.dot_view(table)
        if not _same_function(vals, ok) and self._zero_one_input(lay.index):
            # the inputs are {0, c}: as 1-bit (bipolar) inputs each class would carry the
            # offset c/2 * rowsum_j; as k-bit levels q in {0, 1} of step c the dot is
            # sum_i w_i q_i exactly and the offset is gone (the previous layer becomes A2, its
            # output q <= 1: thresholds T, never, never)
            info, table = self._reencode_zero_one(lay)
            vals, ok, dmax = info.dot_view(table)
        for j in range(vals.shape[1]):
            s = np.diff(vals[ok[:, j], j])
            if not (np.all(s > 0) or np.all(s < 0)):
                raise EieError(f"{lay.last}: output {j} is not a strictly monotone function of "
                               f"the last layer's dot; eie's last layer outputs the dot itself")
        if not _same_function(vals, ok):
            raise EieError(self._why_not_same(lay, info))
        vals, falling = _orient(vals, ok)
        self.weights[lay.index][falling] *= -1
        return {"output_table": vals.astype(np.float32), "output_dot_max": int(dmax)}

    def _zero_one_input(self, l: int) -> bool:
        """Whether layer ``l``'s inputs are a hidden layer's two levels ``{0, c}``, ``c > 0``
        (FINN's BINARY activations, a Relu'd 1-bit Quant, a k-bit Quant that reaches only
        ``0`` and one other level)."""
        return (l > 0 and self.info[l].in_bits == 1 and self.act_bits[l - 1] == 1
                and self.act_levels[l - 1][0] == 0.0 and self.act_levels[l - 1][1] > 0)

    def _reencode_zero_one(self, lay: _Layer):
        """Layer ``lay.index - 1``'s ``{0, c}`` output as A2 levels ``q in {0, 1}`` of step
        ``c`` (exact: the same values), and layer ``lay.index``'s table again, over its
        integer dot, through the nodes after its MatMul: ``(info, table)``."""
        l, prev = lay.index, lay.index - 1
        c = self.act_levels[prev][1]
        pinfo, info = self.info[prev], self.info[l]
        t = np.asarray(self.thresholds[prev], dtype=np.int64)
        never = np.full(t.shape, pinfo.hi + 1, dtype=np.int64)
        self.thresholds[prev] = np.stack([t, never, never], axis=1)
        self.act_bits[prev] = 2
        self.act_levels[prev] = (0.0, c)
        new = replace(info, in_bits=2, table0=info.make_table(2, 0.0, c))
        self.info[l] = new
        table = new.table0
        for _, fn in lay.history:
            table = fn(table).astype(np.float32)
        return new, table

    def _why_not_same(self, lay: _Layer, info: _Info) -> str:
        """Why the output layer's values are not one function of the dot in every class: the
        node that makes them differ and, when it is the MatMul/Gemm, what in it (weight scales
        per output, a bias, inputs whose levels are not symmetric about 0) and what to do."""
        tail = (", so their argmax is not the dots'; eie's last layer outputs the dot (or, "
                "thresholded, bits)")
        t = info.table0
        if _same_function(*info.dot_view(t)[:2]):
            for label, fn in lay.history:
                t = fn(t).astype(np.float32)
                if not _same_function(*info.dot_view(t)[:2]):
                    return (f"{label}: makes the outputs a different function of the dot in each "
                            f"class (a per-class scale or offset after the last layer){tail}; "
                            f"move per-class ops before a quantizer, or leave them to the host")
            return (f"{info.label}: makes the outputs a different function of the dot in each "
                    f"class{tail}")
        head = f"{info.label}: makes the outputs a different function of the dot in each class"
        sc = np.unique(info.scales)
        if sc.size > 1:
            return (f"{head}: its weights have a scale per output ({_show(info.scales, 4)}; "
                    f"weight scales per output){tail}; use one weight scale for the layer")
        if info.bias is not None and np.unique(info.bias).size > 1:
            return (f"{head}: its bias C adds {_show(info.bias, 4)}, a different offset per "
                    f"class{tail}; drop the bias, or threshold the output layer")
        l = lay.index
        if l == 0:
            v0, v1 = self.input_levels
            src = f"the network input takes the two levels {v0:g} and {v1:g}"
            fix = ("quantize the input to levels symmetric about 0 (BipolarQuant, a signed 1-bit "
                   "Quant, MultiThreshold out_scale=2 out_bias=-1)")
        elif self.act_bits[l - 1] == 1:
            a, b = self.act_levels[l - 1]
            v0, v1 = a, a + b
            src = f"layer {l - 1}'s activations take the two levels {v0:g} and {v1:g}"
            fix = ("use levels symmetric about 0 (BipolarQuant, a signed 1-bit Quant, "
                   "MultiThreshold out_scale=2 out_bias=-1) or levels {0, c} (c > 0)")
        else:
            a, b = self.act_levels[l - 1]
            src = (f"layer {l - 1}'s {self.act_bits[l - 1]}-bit activations are {a:g} + {b:g} q, "
                   f"offset by {a:g}")
            fix = "make level 0 the value 0 (out_bias 0 in a MultiThreshold, zero_point 0)"
            v0 = a
            v1 = None
        mid = (v0 + v1) / 2 if v1 is not None else v0
        return (f"{head}: {src}, so output j gets the offset {mid:g} x (the sum of its weights), "
                f"a different one per class{tail}; {fix}, or threshold the output layer")
