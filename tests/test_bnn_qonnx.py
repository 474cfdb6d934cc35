"""QONNX import (eie.sw.bnn.qonnx, docs/qonnx.md): graphs built with onnx.helper in the forms
Brevitas exports and FINN streamlines, compared bit for bit with onnx's reference evaluator
(the QONNX custom ops written here from their specification), and the refusals."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402
from onnx.reference.op_run import OpRun  # noqa: E402

from eie.common.errors import EieError  # noqa: E402
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
    """Output bits (thresholded last layer) or dots (unthresholded); ``ties`` collects, per
    thresholded layer, how many (sample, neuron) pairs sat exactly on the threshold."""
    x = np.where(bits != 0, 1, -1).astype(np.int64)
    for l, (w, t) in enumerate(zip(net.weights, net.thresholds)):
        k = w.shape[1]
        dot = x @ w.astype(np.int64).T
        if t is None:
            return dot
        m = (k + dot) // 2
        assert np.all(2 * m - k == dot)
        if ties is not None:
            ties.append(int(np.sum(m == t)))
        fire = m >= t if net.rule == "ge" else m > t
        if l == len(net.weights) - 1:
            return fire.astype(np.uint8)
        x = np.where(fire, 1, -1)
    raise AssertionError("unreachable")


def check(model, x, min_ties=0):
    """The import equals the reference evaluation, bit for bit, on inputs ``x``."""
    imp = import_qonnx(model)
    ties: list = []
    ours = imp.outputs(forward(imp.net, imp.input_bits(x), ties))
    ref = reference(model, x)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, ref.reshape(ours.shape))
    assert sum(ties) >= min_ties, ties
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
    assert net.thresholds[-1] is None and imp.output_table.shape == (65, 10)
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
    assert np.array_equal(imp.output_table[:, 0], np.arange(-k, k + 1, 2, dtype=np.float32))


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
    rng = np.random.default_rng(9)
    g = Graph()
    h = g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX)
    w = g.op("Quant", g.const(rng.normal(size=(8, 4))), g.const(0.25), g.const(0.0),
             g.const(4.0), domain=QONNX, name="Quant_w", signed=1, narrow=1)
    _refused(g.model("x", [1, 8], g.op("MatMul", h, w)),
             "node 'Quant_w' (Quant): 4-bit weights", "1-bit")

    g = Graph()
    h = g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX)
    h = _small(g, h, 8, 4, rng)
    h = g.op("Quant", h, g.const(1.0), g.const(0.0), g.const(2.0), domain=QONNX,
             name="Quant_a", signed=1, narrow=0)
    _refused(g.model("x", [1, 8], _small(g, h, 4, 2, rng)), "node 'Quant_a' (Quant): 2-bit")

    g = Graph()
    h = g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX)
    h = _small(g, h, 8, 4, rng)
    h = g.op("MultiThreshold", h, g.const(np.zeros((4, 3))), domain=QONNX, name="MT_1",
             out_dtype="UINT2")
    _refused(g.model("x", [1, 8], _small(g, h, 4, 2, rng)),
             "node 'MT_1' (MultiThreshold): 3 thresholds per channel")


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
    _refused(g.model("x", [1, 8], h), "node 'MatMul_0' (MatMul)", "bipolar weights")
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
    h = g.op("Relu", h, name="Relu_3")
    _refused(g.model("x", [1, 8], _small(g, h, 4, 2, rng)), "node 'Relu_3' (Relu): op not supported")
    # a hidden layer that is not binarized
    g = Graph()
    h = _small(g, g.op("BipolarQuant", "x", g.const(1.0), domain=QONNX), 8, 4, rng)
    h = g.op("Mul", h, g.const(0.5), name="Mul_1")
    _refused(g.model("x", [1, 8], _small(g, h, 4, 2, rng)), "node 'Mul_1' (Mul)", "1-bit activations")
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
