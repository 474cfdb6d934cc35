"""The benchmark LSTM of ``bench/real_lstm.py``: its backward pass against finite differences.

``bench/`` is not a package, so the module is loaded from its path."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def real_lstm(bench_module):
    return bench_module("real_lstm")


def _tiny(real_lstm, seed=0):
    """An LSTM of H=4 on 3 steps of 5 inputs, float64, with every gate's weights nonzero and
    a batch of 3 random inputs (some exactly zero, as pixels are)."""
    rng = np.random.default_rng(seed)
    model = real_lstm.LSTM.init(5, 4, n_cls=3, seed=seed, dtype=np.float64)
    model.W *= 3.0                       # gates away from their linear region
    model.b += rng.standard_normal(model.b.shape) * 0.5
    model.c += rng.standard_normal(model.c.shape) * 0.1
    xs = rng.uniform(0, 1, (3, 3, 5)) * (rng.uniform(0, 1, (3, 3, 5)) > 0.3)
    y = np.array([0, 2, 1])
    return model, xs, y


def test_gradients_match_finite_differences(real_lstm):
    model, xs, y = _tiny(real_lstm)
    loss, grads = real_lstm.loss_and_grads(model, xs, y)
    # the loss is the inference path's cross-entropy
    logits = real_lstm.run(model, xs)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(3), y])), rel=1e-10)
    eps = 1e-6
    for name, param, grad in zip("W b V c".split(), model.params(), grads):
        assert grad.shape == param.shape and grad.dtype == np.float64
        num = np.zeros_like(param)
        for idx in np.ndindex(param.shape):
            old = param[idx]
            param[idx] = old + eps
            lp, _ = real_lstm.loss_and_grads(model, xs, y)
            param[idx] = old - eps
            lm, _ = real_lstm.loss_and_grads(model, xs, y)
            param[idx] = old
            num[idx] = (lp - lm) / (2 * eps)
        assert np.abs(num).max() > 1e-4, name          # the check is not vacuous
        np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-9, err_msg=name)
        rel = np.linalg.norm(grad - num) / np.linalg.norm(grad + num)
        assert rel < 1e-5, (name, rel)


def test_recorded_gate_inputs_are_what_the_gates_see(real_lstm):
    model, xs, _ = _tiny(real_lstm, seed=1)
    seen = []

    def gate(xh):
        seen.append(xh.copy())
        return xh @ model.W.T + model.b

    logits, rec = real_lstm.run(model, xs, record=True)
    np.testing.assert_array_equal(real_lstm.run(model, xs, gate=gate), logits)
    np.testing.assert_array_equal(np.stack(seen, axis=1), rec)
    np.testing.assert_array_equal(rec[:, :, :5], xs)            # [x_t; h_{t-1}]
    np.testing.assert_array_equal(rec[:, 0, 5:], 0.0)           # h_{-1} = 0
