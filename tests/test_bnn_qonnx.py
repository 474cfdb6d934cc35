"""QONNX import (eie.sw.bnn.qonnx, docs/qonnx.md): graphs built with onnx.helper in the forms
Brevitas exports and FINN streamlines (W1/W2 weights, A1..A4 activations), compared bit for bit
with onnx's reference evaluator (the QONNX custom ops written here from their specification;
onnxruntime has no QONNX ops), with the contract's forward pass and with the compiled image's
golden model (the CLI, the Amaranth simulator for one small graph), and the refusals."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402
from onnx.reference.op_run import OpRun  # noqa: E402

from eie.common.errors import EieError  # noqa: E402
from eie.sw.bnn.compile import compile_integer  # noqa: E402
from eie.sw.bnn.golden import golden_forward  # noqa: E402
from eie.sw.bnn.params import IntegerBnn  # noqa: E402
from eie.sw.bnn.qonnx import import_qonnx, load_qonnx  # noqa: E402

QONNX = "qonnx.custom_op.general"
BREVITAS = "onnx.brevitas"


# -- the QONNX custom ops, from docs/qonnx-custom-ops (the reference evaluator's side) ---------

class _BipolarQuantRef(OpRun):
    def _run(self, x, scale):
        # sign with sign(0) = +1, times the scale
        return ((np.where(x >= 0, 1.0, -1.0) * scale).astype(x.dtype),)


class _QuantRef(OpRun):
    def _run(self, x, scale, zeropt, bitwidth, signed=1, narrow=0, rounding_mode="ROUND"):
        bits = int(bitwidth)
        v = x / scale + zeropt
        if bits == 1 and signed:
            v = np.where(v >= 0, 1.0, -1.0)
        else:
            lo = -(2 ** (bits - 1)) + narrow if signed else 0
            hi = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1 - narrow
            assert rounding_mode in ("ROUND", b"ROUND")
            v = np.round(np.clip(v, lo, hi))            # ROUND is half to even
        return (((v - zeropt) * scale).astype(x.dtype),)


class _MultiThresholdRef(OpRun):
    def _run(self, x, thresholds, out_dtype=None, out_scale=1.0, out_bias=0.0, data_layout="NCHW"):
        # channel axis 1 (NC...); count of the channel's thresholds t with x >= t
        xc = np.moveaxis(x, 1, -1)[..., None]
        n = (xc >= thresholds).sum(axis=-1)
        return ((out_scale * np.moveaxis(n, -1, 1) + out_bias).astype(x.dtype),)


def _ops(domain):
    return [type(name, (base,), {"op_domain": domain}) for name, base in
            (("BipolarQuant", _BipolarQuantRef), ("Quant", _QuantRef),
             ("MultiThreshold", _MultiThresholdRef))]


def reference(model, x):
    ev = ReferenceEvaluator(model, new_ops=_ops(QONNX) + _ops(BREVITAS))
    return ev.run(None, {model.graph.input[0].name: x})[0]


# -- an IntegerBnn's forward pass, from its definition ------------------------------------

def forward(net: IntegerBnn, bits: np.ndarray, ties: list | None = None) -> np.ndarray:
    """Output bits (thresholded last layer) or dots (unthresholded), from the contract
    (docs/ARCHITECTURE.md): 1-bit inputs are +-1 and the accumulator is the match count
    ``(dot + K') / 2`` (``K'`` the neuron's nonzero weights), k-bit inputs are their levels
    ``0..2^k - 1`` and the accumulator is the dot; a hidden layer outputs the number of its
    thresholds the accumulator reaches. ``ties`` collects, per thresholded layer, how many
    (sample, neuron, threshold) triples sat exactly on the threshold."""
    x, in_bits = np.asarray(bits).astype(np.int64), 1
    acts = net.layer_acts
    for l, (w, t) in enumerate(zip(net.weights, net.thresholds)):
        w = np.asarray(w, dtype=np.int64)
        if in_bits == 1:
            dot = (2 * x - 1) @ w.T
            kp = np.count_nonzero(w, axis=1)[None, :]
            acc = (dot + kp) // 2
            assert np.all(2 * acc - kp == dot)
        else:
            dot = acc = x @ w.T
        if t is None:
            return dot
        t2 = np.asarray(t).reshape(len(t), -1)[None, :, :]
        if ties is not None:
            ties.append(int(np.sum(acc[:, :, None] == t2)))
        q = ((acc[:, :, None] >= t2) if net.rule == "ge" else (acc[:, :, None] > t2)).sum(axis=2)
        if l == len(net.weights) - 1:
            return q.astype(np.uint8)
        x, in_bits = q, acts[l]
    raise AssertionError("unreachable")


def check(model, x, min_ties=0):
    """The import equals the reference evaluation, bit for bit, on inputs ``x``; the compiled
    image's golden model equals the contract's forward pass."""
    imp = import_qonnx(model)
    ties: list = []
    bits = imp.input_bits(x)
    y = forward(imp.net, bits, ties)
    ours = imp.outputs(y)
    ref = reference(model, x)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, ref.reshape(ours.shape))
    assert sum(ties) >= min_ties, ties
    np.testing.assert_array_equal(golden_forward(compile_integer(imp.net), bits), y)
    return imp


# -- graph building -----------------------------------------------------------------------

class Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def _name(self, p):
        self.n += 1
        return f"{p}{self.n}"

    def const(self, value, dtype=np.float32):
        name = self._name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type, *inputs, domain="", name=None, **attrs):
        out = self._name("t")
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=name or
                                           self._name(op_type + "_"), domain=domain, **attrs))
        return out

    def model(self, inp, shape, out, opset=17, annotation=None):
        g = helper.make_graph(self.nodes, "g",
                              [helper.make_tensor_value_info(inp, TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                              initializer=self.inits)
        if annotation:
            qa = onnx.TensorAnnotation(tensor_name=inp)
            qa.quant_parameter_tensor_names.add(key="finn_datatype", value=annotation)
            g.quantization_annotation.append(qa)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset),
                                                   helper.make_opsetid(QONNX, 1),
                                                   helper.make_opsetid(BREVITAS, 1)])


def brevitas_tfc(rng, hw=(28, 28), hidden=(64, 64, 64), n_out=10, domain=BREVITAS, ties=True,
                 act="BipolarQuant"):
    """The shape of Brevitas' TFC export (QONNX model zoo TFC_1W1A): a dynamic flatten,
    ``2x - 1``, BipolarQuant input, BipolarQuant weights through Transpose into MatMul,
    BatchNormalization + BipolarQuant activations (or ``act="Quant"``: a signed 1-bit Quant),
    a scalar TensorNorm after the last layer."""
    g = Graph()
    x = "x"
    shape = g.op("Shape", x)
    n = g.op("Gather", shape, g.const(0, np.int64), axis=0)
    n = g.op("Unsqueeze", n, g.const([0], np.int64))
    n = g.op("Concat", n, g.const([-1], np.int64), axis=0)
    h = g.op("Reshape", x, n)
    h = g.op("Sub", g.op("Mul", h, g.const(2.0)), g.const([1.0]))
    h = g.op("BipolarQuant", h, g.const(1.0), domain=domain)
    sizes = [hw[0] * hw[1], *hidden, n_out]
    for l, (k, o) in enumerate(zip(sizes, sizes[1:])):
        w = g.op("BipolarQuant", g.const(rng.normal(size=(o, k))), g.const(1.0), domain=domain)
        h = g.op("MatMul", h, g.op("Transpose", w, perm=[1, 0]))
        if l == len(sizes) - 2:
            break
        gamma = rng.uniform(0.3, 2.0, o) * rng.choice([-1, 1], o)
        gamma[0] = 0.0                                            # a constant neuron
        mean = rng.normal(0, np.sqrt(k) / 2, o)
        var = rng.uniform(0.5, 2.0, o) * k
        beta = rng.normal(0, 1, o)
        if ties:                                                  # BN output exactly 0 at a reachable dot
            tie = np.arange(1, o, 3)
            mean[tie] = 2 * rng.integers(-2, 3, tie.size) + (k % 2)
            beta[tie] = 0.0
        h = g.op("BatchNormalization", h, *(g.const(v) for v in (gamma, beta, mean, var)),
                 epsilon=1e-5)
        if act == "Quant":
            h = g.op("Quant", h, g.const(1.0), g.const(0.0), g.const(1.0), domain=domain,
                     signed=1, narrow=0, rounding_mode="ROUND")
        else:
            h = g.op("BipolarQuant", h, g.const(1.0), domain=domain)
    # TensorNorm: (y - mean) / (var + eps) ** 0.5 * weight + bias, scalars
    h = g.op("Sub", h, g.const([0.4488643]))
    h = g.op("Div", h, g.op("Pow", g.const([318.19666]), g.const(0.5)))
    h = g.op("Add", g.op("Mul", h, g.const([0.7341181])), g.const([-1.1436615]))
    return g.model(x, [None, 1, *hw], h)


def finn_tfc(rng, sizes=(49, 24, 16, 10), zero_one=False, last_thresholded=True, gemm_bias=True):
    """The shape of a FINN-streamlined TFC: a MultiThreshold input quantizer, plain +-1 float
    weights (Gemm with transB, and MatMul), a per-channel scale of either sign, MultiThreshold
    activations ({-1, +1}, or {0, 1} with ``zero_one``) with ties on reachable values."""
    g = Graph()
    sc, bi = (1.0, 0.0) if zero_one else (2.0, -1.0)
    dt = "BINARY" if zero_one else "BIPOLAR"
    h = g.op("MultiThreshold", "x", g.const([[0.5]]), domain=QONNX, out_dtype=dt,
             out_scale=2.0, out_bias=-1.0)
    last = len(sizes) - 2
    for l, (k, o) in enumerate(zip(sizes, sizes[1:])):
        w = rng.choice([-1.0, 1.0], (o, k))
        if l % 2 == 0:
            c = g.const(rng.integers(-3, 4, o)) if gemm_bias and l < last else None
            h = g.op("Gemm", h, g.const(w), *([c] if c else []), transB=1)
        else:
            h = g.op("MatMul", h, g.const(w.T))
        if l == last and not last_thresholded:
            break
        s = rng.choice([-2.0, -0.5, 0.5, 1.0, 4.0], o)
        h = g.op("Mul", h, g.const(s))
        # thresholds on reachable integer pre-activations (ties), scaled like the data
        t = (rng.integers(-3, 4, o) * s)[:, None]
        t[0] = -1e9                                               # always on
        h = g.op("MultiThreshold", h, g.const(t), domain=QONNX, out_dtype=dt,
                 out_scale=sc, out_bias=bi)
        if l == 0:
            h = g.op("Reshape", h, g.const([-1, o], np.int64))
    return g.model("x", [None, sizes[0]], h)


def inputs(rng, n, shape, on=0.5):
    x = rng.random((n, *shape)).astype(np.float32)
    flat = x.reshape(n, -1)
    flat[:, ::7] = on                                             # exactly on the input threshold
    return x


# -- tests --------------------------------------------------------------------------------

def test_tfc_brevitas_equals_reference():
    """Acceptance: a QONNX TFC (784-64-64-64-10, Brevitas' export form) made with onnx.helper
    imports and equals its ONNX reference execution on random inputs, ties included."""
    rng = np.random.default_rng(1)
    model = brevitas_tfc(rng)
    imp = check(model, inputs(rng, 300, (1, 28, 28)), min_ties=1)
    net = imp.net
    assert net.shape == [784, 64, 64, 64, 10] and net.rule == "ge"
    assert net.thresholds[-1] is None and imp.output_table.shape == (129, 10)
    assert imp.output_dot_max == 64 and net.layer_bits == [1] * 4 and net.layer_acts == [1] * 4
    assert all(t.dtype == np.int64 for t in net.thresholds[:-1])
    assert all(w.dtype == np.int8 and set(np.unique(w)) <= {-1, 1} for w in net.weights)
    assert imp.input_levels == (-1.0, 1.0)
    # the argmax of eie's dots is the graph's
    x = inputs(rng, 50, (1, 28, 28))
    dots = forward(net, imp.input_bits(x))
    assert np.array_equal(np.argmax(dots, axis=1), np.argmax(reference(model, x), axis=1))
    # the constant neuron (gamma = 0) becomes an always-on or never-on threshold
    assert net.thresholds[0][0] in (0, 785)


def test_tfc_small_qonnx_domain():
    rng = np.random.default_rng(2)
    model = brevitas_tfc(rng, hw=(5, 5), hidden=(9, 7), n_out=4, domain=QONNX, act="Quant")
    check(model, inputs(rng, 400, (1, 5, 5)), min_ties=1)


@pytest.mark.parametrize("zero_one", [False, True])
def test_finn_multithreshold_thresholded_last(zero_one):
    rng = np.random.default_rng(3 + zero_one)
    model = finn_tfc(rng, zero_one=zero_one)
    imp = check(model, inputs(rng, 500, (49,)), min_ties=10)
    assert imp.net.last_thresholded and imp.output_table is None
    assert imp.output_levels == ((0.0, 1.0) if zero_one else (-1.0, 1.0))


def test_finn_unthresholded_last_outputs_dot():
    rng = np.random.default_rng(5)
    imp = check(finn_tfc(rng, last_thresholded=False), inputs(rng, 300, (49,)), min_ties=10)
    k = imp.net.shape[-2]
    assert np.array_equal(imp.output_table[::2, 0], np.arange(-k, k + 1, 2, dtype=np.float32))
    assert np.all(np.isnan(imp.output_table[1::2, 0]))                # the other parity


def test_annotated_bipolar_input_sign_and_quant():
    """No input quantizer (input annotated BIPOLAR), 1-bit Quant weights with a per-channel
    power-of-two scale of either sign, BN + Sign on an odd fan-in (no exact zero), a 1-bit
    unsigned Quant activation ({0, s}) and a thresholded last layer."""
    rng = np.random.default_rng(6)
    g = Graph()
    k0, k1, k2 = 15, 9, 6
    w = g.op("Quant", g.const(rng.normal(size=(k1, k0))),
             g.const(rng.choice([-0.5, 0.25, 2.0], (k1, 1))), g.const(0.0), g.const(1.0),
             domain=QONNX, signed=1, narrow=0, rounding_mode="ROUND")
    h = g.op("Gemm", "x", w, transB=1)
    h = g.op("BatchNormalization", h, *(g.const(v) for v in (
        rng.uniform(-2, 2, k1), rng.normal(0, 1, k1), rng.normal(0, 2, k1), rng.uniform(0, 1, k1))),
        epsilon=2.0)
    h = g.op("Sign", h)
    h = g.op("MatMul", h, g.const(rng.choice([-1.0, 1.0], (k1, k2))))
    h = g.op("Quant", h, g.const(2.0), g.const(0.0), g.const(1.0), domain=QONNX,
             signed=0, narrow=0, rounding_mode="ROUND")
    model = g.model("x", [None, k0], h, annotation="BIPOLAR")
    x = rng.choice([-1.0, 1.0], (600, k0)).astype(np.float32)
    imp = check(model, x)
    assert imp.output_levels == (0.0, 2.0) and imp.net.last_thresholded


def test_round_trip_file(tmp_path):
    rng = np.random.default_rng(7)
    model = brevitas_tfc(rng, hw=(4, 4), hidden=(8,), n_out=3)
    path = tmp_path / "tfc.onnx"
    onnx.save(model, str(path))
    net = load_qonnx(path)
    direct = import_qonnx(model).net
    assert net.shape == [16, 8, 3]
    for a, b in zip(net.weights + net.thresholds[:-1], direct.weights + direct.thresholds[:-1]):
        assert np.array_equal(a, b)
    with pytest.raises(EieError, match="no such ONNX file"):
        load_qonnx(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"\x00not a model\xff" * 3)
    with pytest.raises(EieError, match="not an ONNX model"):
        load_qonnx(tmp_path / "bad.onnx")


# -- k-bit activations, ternary weights (W2, A2..A4) -------------------------------------------

def qnn_mlp(rng, sizes, w_bits, a_bits, act="Quant", norm="bn", last="dots", act_scale=0.5,
            w_scale=None, w_quant_bits=2, gemm=False, clip=False):
    """A quantized MLP in Brevitas' / FINN's forms: a MultiThreshold input quantizer at 128
    (pixels 0..255 -> +-1), per layer W1 (BipolarQuant) or W2 weights (a signed narrow-range
    ``w_quant_bits``-bit Quant with a per-output power-of-two scale, per-tensor in the last
    layer; ``w_scale`` overrides it) through Transpose into MatMul (or Gemm transB=1), then
    per neuron either BatchNormalization (``norm="bn"``) or a Mul by +-2^e and an Add that puts
    rounding points / thresholds on reachable pre-activations (``"ties"``), then the activation:
    BipolarQuant (A1), or for A2..A4 ``act="Quant"`` (Relu + unsigned Quant of scale
    ``act_scale``, DoReFa/Brevitas; ``clip``: a Clip to [0, top] instead of the Relu) or
    ``act="MultiThreshold"`` (2^k - 1 thresholds,
    ``out_scale=act_scale``, UINTk). The last layer outputs dots (a scalar TensorNorm) or bits
    (``last="bits"``: BN + BipolarQuant)."""
    g = Graph()
    h = g.op("MultiThreshold", "x", g.const([[128.0]]), domain=QONNX, out_dtype="BIPOLAR",
             out_scale=2.0, out_bias=-1.0)
    n = len(sizes) - 1
    in_scale, in_levels = 1.0, 1                      # the layer input's step and top level
    for l in range(n):
        k, o = sizes[l], sizes[l + 1]
        is_last = l == n - 1
        if w_bits[l] == 2:
            if w_scale is not None:
                c = np.broadcast_to(np.asarray(w_scale, dtype=np.float64), (o, 1)).copy()
            elif is_last:
                c = np.full((o, 1), 0.25)
            else:
                c = 2.0 ** rng.integers(-3, 2, (o, 1))
            wf = rng.normal(0, 0.8, (o, k)) * c
            if w_quant_bits > 2:                                       # integers in -1..1 still
                wf = np.clip(wf, -1.4 * c, 1.4 * c)
            w = g.op("Quant", g.const(wf), g.const(c), g.const(0.0), g.const(float(w_quant_bits)),
                     domain=QONNX, signed=1, narrow=1, rounding_mode="ROUND")
        else:
            c = np.ones((o, 1))
            w = g.op("BipolarQuant", g.const(rng.normal(size=(o, k))), g.const(1.0), domain=QONNX)
        if gemm:
            h = g.op("Gemm", h, w, transB=1)
        else:
            h = g.op("MatMul", h, g.op("Transpose", w, perm=[1, 0]))
        c = c[:, 0]
        spread = np.sqrt(0.6 * k) * max(in_levels, 1) / 2           # typical |dot|
        if is_last:
            if last == "bits":
                h = g.op("BatchNormalization", h, *(g.const(v) for v in (
                    rng.uniform(0.5, 2, o) * rng.choice([-1, 1], o), rng.normal(0, 0.5, o),
                    rng.normal(0, 1, o) * c * in_scale * spread,
                    (c * in_scale * spread) ** 2)), epsilon=1e-5)
                h = g.op("BipolarQuant", h, g.const(1.0), domain=QONNX)
            else:
                h = g.op("Sub", h, g.const([0.4488643]))
                h = g.op("Mul", h, g.const([0.7341181]))
            break
        kb = a_bits[l]
        top = (2 ** kb - 1) * act_scale if kb > 1 else 1.0
        if norm == "bn":
            pre = c * in_scale * spread
            gamma = rng.uniform(0.3, 1.5, o) * rng.choice([-1, 1], o) * top / 2
            gamma[0] = 0.0                                            # a constant neuron
            beta = rng.uniform(0, top, o) if kb > 1 else rng.normal(0, 0.5, o)
            h = g.op("BatchNormalization", h, *(g.const(v) for v in (
                gamma, beta, rng.normal(0, 0.5, o) * pre, pre ** 2)), epsilon=1e-5)
        else:
            # u = m * pre + add, m = +-2^e with |m * c * in_scale| ~ top / spread, a power of two
            e = np.round(np.log2(top / (c * in_scale * spread)))
            m = 2.0 ** e * rng.choice([-1, 1], o)
            step = np.abs(m) * c * in_scale                           # u per unit of dot
            if kb > 1 and act == "Quant":                 # rounding points: (j + 0.5) * s
                add = (rng.integers(0, 2 ** kb - 1, o) + 0.5) * act_scale \
                    + step * rng.integers(-2, 3, o)
            else:
                add = step * rng.integers(-2, 3, o)
            h = g.op("Mul", h, g.const(m))
            h = g.op("Add", h, g.const(add))
        if kb == 1:
            h = g.op("BipolarQuant", h, g.const(1.0), domain=QONNX)
            in_scale, in_levels = 1.0, 1
            continue
        if act == "Quant":
            h = g.op("Clip", h, g.const(0.0), g.const(top)) if clip else g.op("Relu", h)
            h = g.op("Quant", h, g.const(act_scale), g.const(0.0), g.const(float(kb)),
                     domain=QONNX, signed=0, narrow=0, rounding_mode="ROUND")
        else:
            # thresholds (ge) on levels j * s / 2 of u, sorted; ties where u reaches them
            t = np.sort(rng.integers(-1, 2 * 2 ** kb, (o, 2 ** kb - 1)), axis=1) * act_scale / 2
            h = g.op("MultiThreshold", h, g.const(t), domain=QONNX, out_dtype=f"UINT{kb}",
                     out_scale=act_scale, out_bias=0.0)
        in_scale, in_levels = act_scale, 2 ** kb - 1
    return g.model("x", [None, sizes[0]], h)


def pixels(rng, n, k):
    """Random pixels 0..255, every seventh exactly 128 (on the input threshold)."""
    x = rng.integers(0, 256, (n, k)).astype(np.float32)
    x[:, ::7] = 128.0
    return x


@pytest.fixture(scope="module")
def digits():
    from eie.sw.mnist import load_mnist

    return load_mnist().x_test.astype(np.float32)                # 1,000 digits, 0..255


def test_w2a2_tfc_equals_reference(digits):
    """Acceptance (issue 16): a W2A2 QONNX TFC (784-64-64-64-10; 2-bit narrow Quant weights with
    per-channel scales, BN, Relu + 2-bit unsigned Quant activations) made with onnx.helper
    imports as W2A2 and equals its ONNX reference on random inputs and on the digits."""
    rng = np.random.default_rng(31)
    model = qnn_mlp(rng, [784, 64, 64, 64, 10], [2, 2, 2, 2], [2, 2, 2])
    imp = check(model, pixels(rng, 200, 784), min_ties=1)
    net = imp.net
    assert net.shape == [784, 64, 64, 64, 10]
    assert net.layer_bits == [2, 2, 2, 2] and net.layer_acts == [2, 2, 2, 1]
    assert [t.shape for t in net.thresholds[:-1]] == [(64, 3)] * 3
    assert all(np.any(w == 0) for w in net.weights)
    assert imp.act_levels == [(0.0, 0.5)] * 3
    assert imp.output_dot_max == 64 * 3
    check(model, digits)
    # the classes: eie's argmax of dots is the graph's
    dots = forward(net, imp.input_bits(digits))
    assert np.array_equal(np.argmax(dots, axis=1), np.argmax(reference(model, digits), axis=1))


QNN_CASES = {
    # name: sizes, weight bits, activation bits, builder options
    "W1A2-multithreshold": ([49, 24, 16, 10], [1, 1, 1], [2, 2], dict(act="MultiThreshold",
                                                                      norm="ties")),
    "W2A2-multithreshold-gemm": ([49, 24, 16, 10], [2, 2, 2], [2, 2],
                                 dict(act="MultiThreshold", norm="ties", gemm=True)),
    "W2A3-quant-ties-bits": ([40, 20, 12, 6], [2, 2, 2], [3, 3],
                             dict(norm="ties", last="bits", act_scale=0.25)),
    "W1A4-quant-ties-clip": ([36, 16, 12, 5], [1, 1, 1], [4, 4], dict(norm="ties",
                                                                      act_scale=0.125, clip=True)),
    "W1A4-multithreshold": ([36, 16, 12, 5], [1, 1, 1], [4, 4], dict(act="MultiThreshold",
                                                                     norm="bn")),
    "mixed-A4-A1-A3": ([30, 14, 11, 9, 6], [2, 1, 2, 1], [4, 1, 3], dict(norm="ties")),
    "W2-from-4-bit-quant": ([30, 12, 9, 6], [2, 2, 2], [2, 2],
                            dict(w_quant_bits=4, w_scale=0.5, norm="bn")),
}


@pytest.mark.parametrize("name", list(QNN_CASES))
def test_qnn_graphs_equal_reference(name):
    """W1/W2 weights with A2..A4 activations (Quant or MultiThreshold, BN or exact rounding
    points/thresholds on reachable pre-activations, flipped neurons, a thresholded output
    layer): the import, its compiled golden model and the contract's forward pass equal the
    ONNX reference, ties included."""
    sizes, wb, ab, opts = QNN_CASES[name]
    rng = np.random.default_rng(sum(sizes) + len(name))
    model = qnn_mlp(rng, sizes, wb, ab, **opts)
    imp = check(model, pixels(rng, 600, sizes[0]),
                min_ties=1 if opts.get("norm") == "ties" else 0)
    net = imp.net
    if name == "W2-from-4-bit-quant":
        # 4-bit Quant weights whose integers happen to be -1, 0, +1 times the scale
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        assert any(n.op_type == "Quant" and inits.get(n.input[3]) == 4 for n in model.graph.node)
    assert net.layer_bits == [b if b == 1 or np.any(w == 0) else 1
                              for b, w in zip(wb, net.weights)]
    assert net.layer_acts[:-1] == ab and net.layer_acts[-1] == 1
    assert net.last_thresholded == (opts.get("last") == "bits")


def test_non_power_of_two_scales():
    """Brevitas' learned scales are not powers of two (a weight scale of 0.173, an activation
    scale of 0.1372): the graph's float32 sums then round, while the import uses the exact dot.
    The bits equal the reference on random inputs (no pre-activation within rounding of a
    threshold); output values agree to float32 rounding, and so do the classes (where the top
    dot is not tied)."""
    rng = np.random.default_rng(41)
    sizes = [49, 20, 16, 10]
    x = pixels(rng, 500, 49)
    check(qnn_mlp(rng, sizes, [2, 2, 2], [2, 3], act_scale=0.1372, w_scale=0.173, last="bits"), x)
    model = qnn_mlp(rng, sizes, [2, 2, 2], [2, 3], act_scale=0.1372, w_scale=0.173)
    imp = import_qonnx(model)
    assert imp.net.layer_acts == [2, 3, 1]
    assert imp.act_levels[0][0] == 0.0 and abs(imp.act_levels[0][1] - 0.1372) < 1e-7
    dots = forward(imp.net, imp.input_bits(x))
    ref = reference(model, x)
    np.testing.assert_allclose(imp.outputs(dots), ref, rtol=1e-5, atol=1e-6)
    # classes where the top dot is unique (tied dots: the graph's rounding picks one)
    top = np.sort(dots, axis=1)
    unique = top[:, -1] > top[:, -2]
    assert unique.sum() > 300
    assert np.array_equal(np.argmax(dots, axis=1)[unique], np.argmax(ref, axis=1)[unique])


def test_w2_weights_need_no_zero_column_and_allow_empty_neurons():
    """A W2 neuron without nonzero weights (K' = 0) outputs a constant; the layer still
    imports."""
    g = Graph()
    h = g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX)
    w = np.array([[1, 0, -1, 0], [0, 0, 0, 0], [1, 1, 1, -1]], dtype=np.float64).T * 0.5
    h = g.op("MatMul", h, g.op("Quant", g.const(w), g.const(0.5), g.const(0.0), g.const(2.0),
                               domain=QONNX, signed=1, narrow=1))
    h = g.op("Relu", g.op("Add", h, g.const([0.5, 0.25, 1.0])))
    h = g.op("Quant", h, g.const(0.5), g.const(0.0), g.const(2.0), domain=QONNX, signed=0)
    h = g.op("MatMul", h, g.const(np.array([[1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])))
    model = g.model("x", [None, 4], h)
    x = np.array(np.meshgrid(*[[-1.0, 1.0]] * 4)).reshape(4, -1).T.astype(np.float32)
    imp = check(model, x)
    assert imp.net.layer_bits == [2, 1] and imp.net.layer_acts == [2, 1]
    assert np.count_nonzero(imp.net.weights[0][1]) == 0


def test_falling_multithreshold_and_ternary_output_layer():
    """A MultiThreshold of negative out_scale (levels 1.5, 1, 0.5, 0: falling in the dot, so
    every neuron is flipped) feeding a W1 layer; a W2 output layer of one scale with a scalar
    Mul after it (dots of K' = nonzero weights per class)."""
    rng = np.random.default_rng(3)
    g = Graph()
    h = g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX)
    h = _small(g, h, 12, 6, rng)
    t = np.sort(rng.integers(-6, 7, (6, 3)), axis=1).astype(np.float64)
    h = g.op("MultiThreshold", h, g.const(t), domain=QONNX, out_dtype="UINT2", out_scale=-0.5,
             out_bias=1.5)
    h = _small(g, h, 6, 3, rng)
    x = rng.choice([-1.0, 1.0], (500, 12)).astype(np.float32)
    imp = check(g.model("x", [None, 12], h), x, min_ties=1)
    assert imp.net.layer_acts == [2, 1] and imp.act_levels == [(0.0, 0.5)]
    g = Graph()
    h = g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX)
    w = g.op("Quant", g.const(rng.normal(size=(3, 12))), g.const(0.5), g.const(0.0),
             g.const(2.0), domain=QONNX, signed=1, narrow=1)
    h = g.op("Mul", g.op("Gemm", h, w, transB=1), g.const([-0.75]))
    imp = check(g.model("x", [None, 12], h), x)
    assert imp.net.layer_bits == [2] and imp.output_dot_max == 12
    assert len({int(np.count_nonzero(r)) for r in imp.net.weights[0]}) > 1     # K' per class
    # per-class weight scales on the output layer change the argmax: refused
    g = Graph()
    h = g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX)
    w = g.op("Quant", g.const(rng.normal(size=(3, 12))), g.const([[0.5], [1.0], [0.5]]),
             g.const(0.0), g.const(2.0), domain=QONNX, signed=1, narrow=1)
    _refused(g.model("x", [None, 12], g.op("Gemm", h, w, transB=1, name="Gemm_last")),
             "node 'Gemm_last' (Gemm): makes the outputs a different function of the dot",
             "weight scales per output")


def test_per_channel_activation_scales_on_one_grid():
    """A 2-bit Quant with per-channel scales 0.5 and 1: the layer's values 0, 0.5 .. 1.5 and
    0, 1 .. 3 are one grid of step 0.5 (levels 0..6): an A3 layer, exact."""
    rng = np.random.default_rng(12)
    g = Graph()
    h = g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX)
    h = _small(g, h, 16, 6, rng)
    h = g.op("Mul", h, g.const(rng.choice([-0.5, 0.25, 0.5], 6)))
    h = g.op("Quant", g.op("Add", h, g.const(rng.integers(0, 4, 6) * 0.5)),
             g.const([0.5, 1.0, 0.5, 1.0, 1.0, 0.5]), g.const(0.0), g.const(2.0), domain=QONNX,
             signed=0, narrow=0)
    h = _small(g, h, 6, 4, rng)
    imp = check(g.model("x", [None, 16], h), rng.choice([-1.0, 1.0], (800, 16)).astype(np.float32),
                min_ties=1)
    assert imp.net.layer_acts == [3, 1] and imp.act_levels == [(0.0, 0.5)]


@pytest.mark.parametrize("kb, bias", [(2, 1.0), (3, 0.25)])
def test_multithreshold_out_bias_folds_into_the_next_layer(kb, bias):
    """Unsigned levels with an offset (out_bias > 0: the value of level q is bias + 0.5 q): the
    offset's share of the next layer's pre-activation (bias * rowsum_j) folds into its
    thresholds; a thresholded {0, 1} output layer."""
    rng = np.random.default_rng(5 + kb)
    g = Graph()
    h = g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX)
    h = _small(g, h, 12, 6, rng)
    t = np.sort(rng.integers(-6, 7, (6, 2 ** kb - 1)), axis=1).astype(np.float64)
    h = g.op("MultiThreshold", h, g.const(t), domain=QONNX, out_dtype=f"UINT{kb}",
             out_scale=0.5, out_bias=bias)
    h = _small(g, h, 6, 5, rng)
    h = g.op("MultiThreshold", h, g.const([[-0.5], [0.0], [0.5], [1.0], [-1.0]]), domain=QONNX,
             out_dtype="BINARY")
    x = rng.choice([-1.0, 1.0], (800, 12)).astype(np.float32)
    imp = check(g.model("x", [None, 12], h), x, min_ties=1)
    assert imp.net.layer_acts == [kb, 1] and imp.act_levels == [(bias, 0.5)]
    assert imp.output_levels == (0.0, 1.0)


# -- refusals: one line, naming the node and its op type ------------------------------------

def _refused(model, *fragments):
    with pytest.raises(EieError) as e:
        import_qonnx(model)
    msg = str(e.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, msg
    return msg


def _small(g, h, k, o, rng):
    w = g.op("BipolarQuant", g.const(rng.normal(size=(k, o))), g.const(1.0), domain=QONNX)
    return g.op("MatMul", h, w)


def test_refuses_conv():
    rng = np.random.default_rng(8)
    g = Graph()
    h = g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX)
    h = g.op("Conv", h, g.const(rng.choice([-1.0, 1.0], (2, 1, 3, 3))), name="Conv_0")
    h = g.op("Flatten", h)
    model = g.model("x", [1, 1, 6, 6], _small(g, h, 32, 3, rng))
    _refused(model, "node 'Conv_0' (Conv): eie's BNN core runs fully connected layers only")


def test_refuses_multibit_weights_and_activations():
    """Weights beyond ternary, signed or zero-pointed multi-bit activations, more than 4 bits,
    multi-bit inputs, a k-bit output layer, levels off one grid, values without a quantizer:
    one line each, naming the node and its op type."""
    rng = np.random.default_rng(9)

    def graph(act=None, w_bits=1, in_mt=None, last=None):
        g = Graph()
        h = (g.op("MultiThreshold", "x", g.const(in_mt), domain=QONNX, name="MT_in",
                  out_dtype="UINT2") if in_mt is not None
             else g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX))
        h = _small(g, h, 8, 4, rng)
        if act is not None:
            h = act(g, h)
        if last is not None:
            return g.model("x", [1, 8], last(g, h))
        return g.model("x", [1, 8], _small(g, h, 4, 2, rng))

    # 3-bit weights with more than three levels
    g = Graph()
    h = g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX)
    w = g.op("Quant", g.const(np.linspace(-1, 1, 32).reshape(8, 4)), g.const(0.25),
             g.const(0.0), g.const(3.0), domain=QONNX, name="Quant_w", signed=1, narrow=1)
    _refused(g.model("x", [1, 8], g.op("MatMul", h, w)),
             "node 'Quant_w' (Quant): 3-bit weights of output 2 take 7 values "
             "(-3, -2, -1, 0, 1, 2, 3) x 0.25", "ternary", "no W3+")
    # zero point of weights
    g = Graph()
    h = g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX)
    w = g.op("Quant", g.const(rng.normal(size=(8, 4))), g.const(1.0), g.const(1.0),
             g.const(2.0), domain=QONNX, name="Quant_z", signed=1, narrow=1)
    _refused(g.model("x", [1, 8], g.op("MatMul", h, w)), "node 'Quant_z' (Quant): zero point",
             "zero_point 0")
    # signed 2-bit activations
    quant = (lambda signed=0, z=0.0, bits=2.0, name="Quant_a", scale=0.5: lambda g, h: g.op(
        "Quant", h, g.const(scale), g.const(z), g.const(bits), domain=QONNX, name=name,
        signed=signed, narrow=0))
    _refused(graph(quant(signed=1)), "node 'Quant_a' (Quant): signed 2-bit activations",
             "unsigned")
    # zero point of activations
    _refused(graph(quant(z=1.0)), "node 'Quant_a' (Quant): zero point (1) x 1", "zero_point 0")
    # more than 4 bits
    _refused(graph(quant(bits=8.0)), "node 'Quant_a' (Quant): 8-bit activations", "1 to 4 bits")
    # a MultiThreshold with signed levels, and one of 16 steps
    mt = (lambda n, bias=0.0: lambda g, h: g.op(
        "MultiThreshold", h, g.const(np.sort(rng.normal(size=(4, n)), axis=1)), domain=QONNX,
        name="MT_1", out_dtype="INT2" if bias else "UINT4", out_bias=bias))
    _refused(graph(mt(3, -2.0)), "node 'MT_1' (MultiThreshold): signed multi-bit activations")
    _refused(graph(mt(16)), "node 'MT_1' (MultiThreshold): 16 thresholds per channel",
             "at most 4 bits")
    # a multi-bit input quantizer
    _refused(graph(in_mt=np.array([[0.2, 0.5, 0.7]])),
             "node 'MT_in' (MultiThreshold): 3 thresholds per channel (multi-bit input)")
    g = Graph()
    h = g.op("Quant", "x", g.const(0.5), g.const(0.0), g.const(2.0), domain=QONNX,
             name="Quant_in", signed=0, narrow=0)
    _refused(g.model("x", [1, 8], _small(g, h, 8, 2, rng)), "node 'Quant_in' (Quant): 2-bit input")
    # a k-bit output layer
    _refused(graph(last=quant(name="Quant_out", scale=2.0)),
             "node 'Quant_out' (Quant): the output layer",
             "bits (a two-level quantizer) or its dots")
    # per-channel activation scales off one grid
    _refused(graph(lambda g, h: g.op("Quant", h, g.const([1.0, 0.3, 1.0, 1.0]), g.const(0.0),
                                     g.const(2.0), domain=QONNX, name="Quant_pc", signed=0)),
             "node 'Quant_pc' (Quant): layer 0's activations take", "not one grid")
    # many values but no quantizer
    _refused(graph(lambda g, h: g.op("Mul", h, g.const(0.5), name="Mul_1")),
             "node 'Mul_1' (Mul): layer 0's activations take 9 values", "no quantizer")


def test_refuses_sign_of_exact_zero():
    """BN + ONNX Sign where the BN output is exactly 0 at a reachable dot: Sign gives 0."""
    rng = np.random.default_rng(10)
    g = Graph()
    h = g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX)
    h = _small(g, h, 8, 4, rng)
    h = g.op("BatchNormalization", h, *(g.const(v) for v in
                                        (np.ones(4), np.zeros(4), np.zeros(4), np.ones(4))))
    h = g.op("Sign", h, name="Sign_1")
    _refused(g.model("x", [1, 8], _small(g, h, 4, 2, rng)),
             "node 'Sign_1' (Sign)", "Sign(0) is 0", "BipolarQuant")


def test_refuses_other_graphs():
    rng = np.random.default_rng(11)
    # float (unbinarized) weights
    g = Graph()
    h = g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX)
    h = g.op("MatMul", h, g.const(rng.normal(size=(8, 3))), name="MatMul_0")
    _refused(g.model("x", [1, 8], h), "node 'MatMul_0' (MatMul): weights of output 0 take 8 "
             "values", "bipolar or ternary weights")
    # an unquantized input
    g = Graph()
    _refused(g.model("x", [1, 8], _small(g, "x", 8, 3, rng)), "(MatMul)", "unquantized")
    # a per-class bias after the last layer changes the argmax
    g = Graph()
    h = _small(g, g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX), 8, 3, rng)
    h = g.op("Add", h, g.const([0.0, 1.0, 3.0]), name="Add_bias")
    _refused(g.model("x", [1, 8], h), "node 'Add_bias' (Add)", "argmax")
    # an unsupported op
    g = Graph()
    h = _small(g, g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX), 8, 4, rng)
    h = g.op("Softmax", h, name="Softmax_3")
    _refused(g.model("x", [1, 8], _small(g, h, 4, 2, rng)),
             "node 'Softmax_3' (Softmax): op not supported")
    # a hidden layer that is not binarized
    g = Graph()
    h = _small(g, g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX), 8, 4, rng)
    h = g.op("Mul", h, g.const(0.5), name="Mul_1")
    _refused(g.model("x", [1, 8], _small(g, h, 4, 2, rng)), "node 'Mul_1' (Mul)", "no quantizer")
    # a branch
    g = Graph()
    a = g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX)
    b = _small(g, a, 8, 8, rng)
    h = g.op("Add", b, a, name="Add_res")
    _refused(g.model("x", [1, 8], h), "(Add)", "chain")
    # an unknown custom domain
    g = Graph()
    h = g.op("XnorPopcountMatMul", "x", g.const(np.ones((8, 3))), domain="acme.ops", name="X_0")
    _refused(g.model("x", [1, 8], h), "node 'X_0' (XnorPopcountMatMul)", "acme.ops")


# -- the command line: eie bnn compile model.onnx ------------------------------------------

@pytest.mark.parametrize("last_thresholded", [False, True])
def test_cli_compiles_a_qonnx_tfc_that_equals_its_reference(tmp_path, cli, last_thresholded):
    """Acceptance through the user's path: `eie bnn compile tfc.onnx`, then `eie bnn golden` on
    the graph's own input bits; the outputs mapped back to the graph's values equal the ONNX
    reference evaluation (dots for an unthresholded last layer, bits for a thresholded one)."""
    rng = np.random.default_rng(21 + last_thresholded)
    model = (finn_tfc(rng, last_thresholded=True) if last_thresholded
             else brevitas_tfc(rng))
    path = tmp_path / "tfc.onnx"
    onnx.save(model, str(path))
    shape = (49,) if last_thresholded else (1, 28, 28)
    x = inputs(rng, 200, shape)
    imp = import_qonnx(model)
    np.save(tmp_path / "bits.npy", imp.input_bits(x))
    r = cli(["bnn", "compile", path, "-o", tmp_path / "img"])
    assert r.code == 0, r.err
    assert "QONNX" in r.out
    r = cli(["bnn", "golden", tmp_path / "img", "--input", tmp_path / "bits.npy",
             "-o", tmp_path / "y.npy"])
    assert r.code == 0, r.err
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == (np.uint8 if last_thresholded else np.int32)
    ref = reference(model, x)
    np.testing.assert_array_equal(imp.outputs(y), ref.reshape(y.shape))


def test_cli_refuses_npz_options_for_onnx(tmp_path, cli):
    rng = np.random.default_rng(23)
    path = tmp_path / "tfc.onnx"
    onnx.save(brevitas_tfc(rng, hw=(4, 4), hidden=(8,), n_out=3), str(path))
    r = cli(["bnn", "compile", path, "-o", tmp_path / "img", "--threshold-rule", "gt"])
    assert r.code != 0 and "QONNX" in r.err and "--threshold-rule" in r.err
    assert not (tmp_path / "img").exists()


def test_cli_compiles_a_w2a2_graph_that_equals_its_reference(tmp_path, cli, digits):
    """Acceptance (issue 16) through the user's path: `eie bnn compile tfc_w2a2.onnx` (2-bit
    weights, 2-bit activations), then `eie bnn golden --classes argmax` on the graph's input
    bits: the outputs mapped back equal the ONNX reference on random inputs and on the
    digits, and so do the classes."""
    rng = np.random.default_rng(51)
    model = qnn_mlp(rng, [784, 64, 64, 64, 10], [2, 2, 2, 2], [2, 2, 2], act="MultiThreshold",
                    norm="ties")
    path = tmp_path / "tfc_w2a2.onnx"
    onnx.save(model, str(path))
    x = np.concatenate([pixels(rng, 200, 784), digits])
    imp = import_qonnx(model)
    np.save(tmp_path / "bits.npy", imp.input_bits(x))
    r = cli(["bnn", "compile", path, "-o", tmp_path / "img"])
    assert r.code == 0, r.err
    assert "QONNX" in r.out and "activations A2,A2,A2,A1" in r.out and "ternary" in r.out
    r = cli(["bnn", "golden", tmp_path / "img", "--input", tmp_path / "bits.npy",
             "-o", tmp_path / "y.npy", "--classes", "argmax"])
    assert r.code == 0, r.err
    y = np.load(tmp_path / "y.npy")
    ref = reference(model, x)
    np.testing.assert_array_equal(imp.outputs(y), ref.reshape(y.shape))
    classes = np.load(tmp_path / "y.classes.npy")
    assert np.array_equal(classes, np.argmax(ref, axis=1))


@pytest.mark.rtl
def test_cli_w2a2_graph_on_the_amaranth_simulator(tmp_path, cli):
    """A small W2A2/W1A3 QONNX graph compiled and run on the Amaranth simulation of the core:
    equal to golden and to the ONNX reference."""
    rng = np.random.default_rng(52)
    model = qnn_mlp(rng, [30, 12, 9, 6], [2, 1, 2], [2, 3], norm="ties", act_scale=0.25)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    x = pixels(rng, 12, 30)
    imp = import_qonnx(model)
    np.save(tmp_path / "bits.npy", imp.input_bits(x))
    r = cli(["bnn", "compile", path, "-o", tmp_path / "img", "--fold", "10:4,4:3,3:2"])
    assert r.code == 0, r.err
    assert "activations A2,A3,A1" in r.out
    r = cli(["bnn", "run", tmp_path / "img", "--input", tmp_path / "bits.npy", "-o",
             tmp_path / "y.npy", "--sim", "amaranth"])
    assert r.code == 0, r.err
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_array_equal(imp.outputs(y), reference(model, x).reshape(y.shape))


# -- {0, c} activations, constant layers, class ops, load errors (audit) ------------------------

def _all_inputs(k):
    """Every +-1 input of width k (float32)."""
    return (np.array(np.meshgrid(*[[-1.0, 1.0]] * k)).reshape(k, -1).T).astype(np.float32)


def _same_classes(imp, model, x):
    """The argmax of eie's dots is the graph's on every input (ties to the lowest index on both
    sides: the outputs are one increasing function of the dot)."""
    dots = forward(imp.net, imp.input_bits(x))
    ref = reference(model, x).reshape(dots.shape)
    assert np.array_equal(np.argmax(dots, axis=1), np.argmax(ref, axis=1))


@pytest.mark.parametrize("scale", [2.0, 0.5])
def test_w1a2_quant_reaching_two_levels_feeds_an_output_layer_of_dots(scale):
    """Audit q9: an unsigned 2-bit Quant whose inputs (even dots) reach only {0, 3 * scale}
    (scale 0.5) or {0, 2, 4, 6} (scale 2) before the output layer of dots: imported exactly
    (bit for bit, classes included); the two-level case as A2 levels q in {0, 1}, not as
    bipolar bits with a per-class offset."""
    rng = np.random.default_rng(3)
    g = Graph()
    h = g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX)
    h = _small(g, h, 6, 4, rng)
    h = g.op("Quant", h, g.const(scale), g.const(0.0), g.const(2.0), domain=QONNX, signed=0,
             narrow=0, rounding_mode="ROUND")
    model = g.model("x", [1, 6], _small(g, h, 4, 3, rng))
    x = _all_inputs(6)
    imp = check(model, x)
    assert imp.net.layer_acts == [2, 1]
    _same_classes(imp, model, x)
    if scale == 0.5:
        assert imp.act_levels == [(0.0, 1.5)]


@pytest.mark.parametrize("w2", [False, True])
def test_finn_binary_multithreshold_before_the_output_layer(w2):
    """FINN's BINARY (0/1) MultiThreshold before the last MatMul (audit qf_binary_out), with
    +-1 or ternary output weights (classes of different K' parity): exact, classes included."""
    rng = np.random.default_rng(21 + w2)
    g = Graph()
    h = g.op("MatMul", "x", g.const(rng.choice([-1.0, 1.0], (9, 6))))
    h = g.op("MultiThreshold", h, g.const(rng.integers(-5, 6, (6, 1)).astype(np.float64)),
             domain="finn.custom_op.general", out_dtype="BINARY")
    w = rng.choice([-1.0, 1.0], (6, 4))
    if w2:
        w[0, 0] = w[1, 2] = w[3, 2] = w[4, 3] = 0.0          # K' 5, 6, 4, 5
    h = g.op("MatMul", h, g.const(w))
    model = g.model("x", [1, 9], h, annotation="BIPOLAR")
    model.opset_import.append(helper.make_opsetid("finn.custom_op.general", 1))
    x = _all_inputs(9)
    ev = ReferenceEvaluator(model, new_ops=_ops("finn.custom_op.general"))
    ref = ev.run(None, {"x": x})[0]
    imp = import_qonnx(model)
    dots = forward(imp.net, imp.input_bits(x))
    np.testing.assert_array_equal(imp.outputs(dots), ref)
    assert np.array_equal(np.argmax(dots, axis=1), np.argmax(ref, axis=1))
    assert imp.net.layer_acts == [2, 1] and imp.act_levels == [(0.0, 1.0)]
    np.testing.assert_array_equal(golden_forward(compile_integer(imp.net), imp.input_bits(x)),
                                  dots)


def test_offset_levels_before_an_output_layer_of_dots_say_why():
    """Two levels {0.5, 1.5} (a MultiThreshold with out_bias 0.5) before an output layer of
    dots: each class gets its own offset, 1 x (its sum of weights), which no encoding removes;
    refused naming the levels and what to do."""
    rng = np.random.default_rng(4)
    g = Graph()
    h = g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX)
    h = _small(g, h, 6, 4, rng)
    h = g.op("MultiThreshold", h, g.const(np.zeros((4, 1))), domain=QONNX, out_dtype="UINT1",
             out_bias=0.5, name="MT_off")
    h = g.op("MatMul", h, g.const(np.array([[1.0, 1, -1], [1, 1, -1], [1, -1, -1],
                                            [1, 1, 1]])), name="mm_last")
    _refused(g.model("x", [1, 6], h), "node 'mm_last' (MatMul)",
             "layer 0's activations take the two levels 0.5 and 1.5",
             "offset 1 x (the sum of its weights)", "symmetric about 0", "threshold the output")


@pytest.mark.parametrize("case", ["ones", "zeros_w2a2"])
def test_constant_hidden_layer_is_accepted(case):
    """A hidden layer whose every neuron is constant (audit qc_const: a bias of +100 before
    BipolarQuant; q3's w2a2odd: a 2-bit layer fed by one neuron that never reaches level 1)
    imports as the float path does, exactly: outputs and classes equal the graph's."""
    rng = np.random.default_rng(7)
    g = Graph()
    h = g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX)
    if case == "ones":
        h = _small(g, h, 6, 4, rng)
        h = g.op("BipolarQuant", g.op("Add", h, g.const(np.full(4, 100.0))), g.const(1.0),
                 domain=QONNX)
        h = _small(g, h, 4, 3, rng)
        k = 6
    else:
        h = _small(g, h, 5, 1, rng)
        h = g.op("Relu", g.op("Add", h, g.const([-2.0])))
        h = g.op("Quant", h, g.const(4.0), g.const(0.0), g.const(2.0), domain=QONNX, signed=0)
        h = _small(g, h, 1, 7, rng)                          # every neuron: 0 or 4 * +-1 ...
        h = g.op("Relu", g.op("Add", h, g.const(np.full(7, -100.0))))
        h = g.op("Quant", h, g.const(0.5), g.const(0.0), g.const(2.0), domain=QONNX, signed=0)
        w = rng.choice([-1.0, 1.0], (7, 2))
        w[0, 1] = 0.0                                        # K' 7 and 6: other parities
        h = g.op("MatMul", h, g.op("Quant", g.const(w), g.const(1.0), g.const(0.0),
                                   g.const(2.0), domain=QONNX, signed=1, narrow=1))
        k = 5
    model = g.model("x", [1, k], h)
    x = _all_inputs(k)
    imp = check(model, x)
    _same_classes(imp, model, x)
    # the constant layer's thresholds never or always fire
    info_layer = 0 if case == "ones" else 1
    t = np.asarray(imp.net.ge_thresholds()[info_layer])
    lo, hi = imp.net.acc_range(info_layer)
    assert np.all((t == lo) | (t == hi + 1)), t


def test_class_ops_after_the_last_layer_are_named_with_the_hint():
    """Softmax, ArgMax and FINN's TopK (two outputs) after the last layer: one line saying to
    remove them and use --classes argmax."""
    rng = np.random.default_rng(8)
    for op, attrs, n_out in (("Softmax", {}, 1), ("ArgMax", {"axis": 1}, 1),
                             ("TopK", {}, 2)):
        g = Graph()
        h = _small(g, g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX), 8, 4, rng)
        ins = [h] + ([g.const([1], np.int64)] if op == "TopK" else [])
        outs = [f"out{i}" for i in range(n_out)]
        g.nodes.append(helper.make_node(op, ins, outs, name=f"{op}_end", **attrs))
        _refused(g.model("x", [1, 8], outs[-1]), f"node '{op}_end' ({op})", "remove it",
                 "--classes argmax")


def test_fixed_batch_is_named():
    rng = np.random.default_rng(9)
    g = Graph()
    h = _small(g, g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX), 6, 4, rng)
    _refused(g.model("x", [4, 6], h), "a fixed batch of 4", "batch dimension of 1 or a dynamic")


def test_load_failures_say_why(tmp_path):
    """A missing external-data file, an empty file, bytes that decode to a model without a
    graph and a directory: one line each, with the reason."""
    rng = np.random.default_rng(10)
    model = brevitas_tfc(rng, hw=(4, 4), hidden=(8,), n_out=3)
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.data", size_threshold=0)
    assert import_qonnx(path).net.shape == [16, 8, 3]
    (tmp_path / "ext.data").unlink()
    with pytest.raises(EieError, match="external data") as e:
        import_qonnx(path)
    assert "ext.data" in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(EieError, match="the file is empty"):
        import_qonnx(tmp_path / "empty.onnx")
    (tmp_path / "nograph.onnx").write_bytes(onnx.ModelProto(ir_version=8).SerializeToString())
    with pytest.raises(EieError, match="without a graph"):
        import_qonnx(tmp_path / "nograph.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"\x00not a model\xff" * 3)
    with pytest.raises(EieError, match=r"not an ONNX model \(DecodeError: .*\)"):
        import_qonnx(tmp_path / "bad.onnx")
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(EieError, match="is a directory"):
        import_qonnx(tmp_path / "dir.onnx")


def test_one_dimensional_graph_input():
    """A graph whose input is one sample of shape (n,) (no batch axis): input_bits takes a
    batch (B, n)."""
    rng = np.random.default_rng(11)
    g = Graph()
    h = g.op("BipolarQuant", g.op("Sub", "x", g.const(0.25)), g.const(1.0), domain=QONNX)
    model = g.model("x", [6], _small(g, h, 6, 4, rng))
    imp = import_qonnx(model)
    x = rng.random((30, 6)).astype(np.float32)
    bits = imp.input_bits(x)
    assert bits.shape == (30, 6) and np.array_equal(bits, (x >= 0.25).astype(np.uint8))
    ref = np.stack([reference(model, s) for s in x])
    np.testing.assert_array_equal(imp.outputs(forward(imp.net, bits)), ref)


# -- the graph's input conversion, recorded in the image ----------------------------------------

def _preprocessing_graph(rng):
    """Audit q7: Transpose -> Flatten -> Sub(0.5, x) -> BipolarQuant -> MatMul: bit 1 where the
    transposed element is <= 0.5."""
    g = Graph()
    h = g.op("Transpose", "x", perm=[0, 2, 1])
    h = g.op("Flatten", h)
    h = g.op("Sub", g.const(0.5), h)
    h = g.op("BipolarQuant", h, g.const(1.0), domain=QONNX)
    return g.model("x", [1, 2, 3], _small(g, h, 6, 4, rng))


def _raw(rng, n, shape):
    x = rng.random((n, *shape)).astype(np.float32)
    flat = x.reshape(n, -1)
    flat[:, ::2] = 0.5                                               # on the threshold
    flat[1, :] = np.nextafter(np.float32(0.5), np.float32(1))
    flat[2, :] = np.nextafter(np.float32(0.5), np.float32(0))
    return x


def test_input_conversion_equals_the_graphs_input_nodes():
    """input_conversion() is input_bits as a rule per bit (element order, threshold, invert),
    on random inputs, on the threshold and one float32 either side; a MultiThreshold input and
    an annotated BIPOLAR input too; a path through c / x is not recorded."""
    rng = np.random.default_rng(12)
    model = _preprocessing_graph(rng)
    imp = import_qonnx(model)
    conv, why = imp.input_conversion()
    assert conv is not None, why
    x = _raw(rng, 200, (2, 3))
    assert np.array_equal(conv.bits(x), imp.input_bits(x))
    assert np.array_equal(conv.bits(x.reshape(200, 6)), imp.input_bits(x))
    assert list(conv.order) == [0, 3, 1, 4, 2, 5] and conv.sample_shape == (2, 3)
    # FINN's input MultiThreshold, and an input annotated BIPOLAR
    imp = import_qonnx(finn_tfc(rng))
    conv, _ = imp.input_conversion()
    x = inputs(rng, 100, (49,))
    assert np.array_equal(conv.bits(x), imp.input_bits(x))
    g = Graph()
    model = g.model("x", [None, 8], _small(g, "x", 8, 3, rng), annotation="BIPOLAR")
    imp = import_qonnx(model)
    conv, _ = imp.input_conversion()
    x = rng.choice([-1.0, 1.0], (50, 8)).astype(np.float32)
    assert conv.levels == (-1.0, 1.0) and np.array_equal(conv.bits(x), imp.input_bits(x))
    with pytest.raises(EieError, match="annotated to take only -1 or 1"):
        conv.bits(np.zeros((1, 8)))
    # c / x is not monotone: no rule recorded, and why
    g = Graph()
    h = g.op("BipolarQuant", g.op("Div", g.const(1.0), "x", name="Div_in"), g.const(1.0),
             domain=QONNX)
    conv, why = import_qonnx(g.model("x", [1, 8], _small(g, h, 8, 3, rng))).input_conversion()
    assert conv is None and "Div_in" in why


def test_cli_graph_input_equals_the_graph(tmp_path, cli):
    """Audit q7 through the user's path: `eie bnn compile` records the graph's input conversion
    in the image; `eie bnn golden --graph-input` on the raw inputs equals the ONNX reference;
    `--binarize 0.5` (which would not reproduce it) is refused, nothing written; an image
    without the record refuses --graph-input; the record round-trips."""
    from eie.sw.bnn.image import read_image, write_image

    rng = np.random.default_rng(13)
    model = _preprocessing_graph(rng)
    path = tmp_path / "pre.onnx"
    onnx.save(model, str(path))
    x = _raw(rng, 60, (2, 3))
    np.save(tmp_path / "raw.npy", x.reshape(60, 6))                 # samples flattened
    r = cli(["bnn", "compile", path, "-o", tmp_path / "img"])
    assert r.code == 0, r.err
    assert "input conversion recorded" in r.out
    r = cli(["bnn", "golden", tmp_path / "img", "--input", tmp_path / "raw.npy", "--graph-input",
             "-o", tmp_path / "y.npy"])
    assert r.code == 0, r.err
    ref = np.concatenate([reference(model, s[None]) for s in x])
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), ref.astype(np.int32))
    r = cli(["bnn", "golden", tmp_path / "img", "--input", tmp_path / "raw.npy", "--binarize",
             "0.5", "-o", tmp_path / "z.npy"])
    assert r.code == 2 and "--graph-input" in r.err and len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "z.npy").exists()
    np.save(tmp_path / "raw3.npy", x)                               # not flattened
    r = cli(["bnn", "golden", tmp_path / "img", "--input", tmp_path / "raw3.npy",
             "--graph-input", "-o", tmp_path / "z.npy"])
    assert r.code == 2 and "(batch, 6)" in r.err and len(r.err.strip().splitlines()) == 1
    np.save(tmp_path / "nan.npy", np.full((2, 6), np.nan, np.float32))
    r = cli(["bnn", "golden", tmp_path / "img", "--input", tmp_path / "nan.npy",
             "--graph-input", "-o", tmp_path / "z.npy"])
    assert r.code == 2 and "must be finite" in r.err
    image = read_image(tmp_path / "img")
    assert image.input_conversion is not None
    assert np.array_equal(image.input_conversion.bits(x.reshape(60, 6)),
                          import_qonnx(model).input_bits(x))
    image.input_conversion = None
    write_image(image, tmp_path / "plain")                       # as an older eie wrote it
    assert "input" not in (tmp_path / "plain" / "manifest.json").read_text()
    assert read_image(tmp_path / "plain").input_conversion is None
    r = cli(["bnn", "golden", tmp_path / "plain", "--input", tmp_path / "raw.npy",
             "--graph-input", "-o", tmp_path / "z.npy"])
    assert r.code == 2 and "records no conversion" in r.err
    r = cli(["bnn", "golden", tmp_path / "img", "--input", tmp_path / "raw.npy", "--graph-input",
             "--binarize", "0.5", "-o", tmp_path / "z.npy"])
    assert r.code == 2 and "exclude each other" in r.err
    assert not (tmp_path / "z.npy").exists()


@pytest.mark.rtl
def test_board_run_graph_input_equals_the_graph(tmp_path, cli):
    """`eie board run --graph-input` (the board's driver against the board top in the
    simulator, UART pins bit by bit) converts the graph's input values as `eie bnn golden
    --graph-input` does: its outputs equal the ONNX reference; on an EIE image the option is
    refused."""
    rng = np.random.default_rng(15)
    model = _preprocessing_graph(rng)
    onnx.save(model, str(tmp_path / "pre.onnx"))
    x = _raw(rng, 4, (2, 3))
    np.save(tmp_path / "raw.npy", x.reshape(4, 6))
    assert cli(["bnn", "compile", tmp_path / "pre.onnx", "-o", tmp_path / "img"]).code == 0
    r = cli(["board", "run", tmp_path / "img", "--input", tmp_path / "raw.npy", "--graph-input",
             "--simulate", "-o", tmp_path / "y.npy"])
    assert r.code == 0, r.err
    ref = np.concatenate([reference(model, s[None]) for s in x])
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), ref.astype(np.int32))
    r = cli(["board", "run", tmp_path / "img", "--input", tmp_path / "raw.npy", "--simulate",
             "-o", tmp_path / "bits.npy"])                  # values that are not bits: refused
    assert r.code == 2 and not (tmp_path / "bits.npy").exists()


def test_cli_input_conversion_manifest_is_checked(tmp_path):
    """A damaged "input" record is one line naming the key."""
    import json

    from eie.sw.bnn.image import read_image

    rng = np.random.default_rng(14)
    imp = import_qonnx(_preprocessing_graph(rng))
    image = compile_integer(imp.net)
    image.input_conversion = imp.input_conversion()[0]
    from eie.sw.bnn.image import write_image
    write_image(image, tmp_path / "img")
    man_path = tmp_path / "img" / "manifest.json"
    good = json.loads(man_path.read_text())
    for change, fragment in (
            (lambda i: i.update(order=[0, 0, 1, 2, 3, 4]), "'input.order' names element 0 twice"),
            (lambda i: i.update(sample_shape=[7]), "'input.sample_shape' is [7]"),
            (lambda i: i.update(threshold=float("nan")), "'input.threshold' must be"),
            (lambda i: i.update(threshold=0.1), "'input.threshold' must be"),   # not float32
            (lambda i: i.update(levels=[-1.0, 1.0]), "exactly one of the two"),
            (lambda i: i.update(invert=[True] * 5), "'input.invert' must be")):
        man = json.loads(json.dumps(good))
        change(man["input"])
        man_path.write_text(json.dumps(man))
        with pytest.raises(EieError) as e:
            read_image(tmp_path / "img")
        assert fragment in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_cli_compiles_an_onnx_file_without_the_suffix(tmp_path, cli):
    """Audit: an ONNX model named model.bin is recognised by its content."""
    rng = np.random.default_rng(15)
    model = brevitas_tfc(rng, hw=(4, 4), hidden=(8,), n_out=3)
    onnx.save(model, str(tmp_path / "model.bin"))
    r = cli(["bnn", "compile", tmp_path / "model.bin", "-o", tmp_path / "img"])
    assert r.code == 0, r.err
    assert "QONNX graph" in r.out


def test_cli_parses_an_onnx_file_without_the_suffix_once(tmp_path, cli, monkeypatch):
    """An ONNX model named model.bin was decoded twice (once to recognise it, once to import
    it); the model read to recognise it goes on to the import. Its external data is still read
    (and a missing data file still said), as for a model named .onnx."""
    from eie.sw.bnn.qonnx import looks_like_onnx, sniff_onnx

    rng = np.random.default_rng(16)
    model = brevitas_tfc(rng, hw=(4, 4), hidden=(8,), n_out=3)
    onnx.save(model, str(tmp_path / "model.bin"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="model.data", size_threshold=0)
    loads = []
    real_load = onnx.load

    def counting_load(*a, **k):
        loads.append(a[0])
        return real_load(*a, **k)

    monkeypatch.setattr(onnx, "load", counting_load)
    r = cli(["bnn", "compile", tmp_path / "model.bin", "-o", tmp_path / "img"])
    assert r.code == 0, r.err
    assert "QONNX graph" in r.out and len(loads) == 1, loads
    assert (tmp_path / "img" / "manifest.json").is_file()
    (tmp_path / "model.data").unlink()
    r = cli(["bnn", "compile", tmp_path / "model.bin", "-o", tmp_path / "img2"])
    assert r.code == 2 and "external data" in r.err and "model.data" in r.err, r.err
    assert not (tmp_path / "img2").exists()
    assert looks_like_onnx(tmp_path / "model.bin") and sniff_onnx(tmp_path / "model.data") is None
