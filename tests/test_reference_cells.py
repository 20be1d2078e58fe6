"""The numpy reference cells: the oracle for every other backend, so pinned down hard here.

- gradients against finite differences, for every parameter, the inputs and the initial state;
- forward against the PyTorch equations written out by hand, one time step at a time;
- the layer stack, ``step``, float32 against float64, PyTorch's parameter layout and init;
- backward leaves its arguments alone; bad inputs fail with errors that say what was expected.
"""

from __future__ import annotations

import numpy as np
import pluggy
import pytest
from cellcheck import (
    CELLS,
    FD_FLOOR,
    FD_TOL,
    KINDS,
    Case,
    assert_gradients_match,
    fd_derivative,
    make_case,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnbench import hookspecs
from rnnbench.cell import GATES, Cell, CellConfig, init_uniform, param_shapes, parameter_count
from rnnbench.plugins.cells import reference
from rnnbench.plugins.cells.reference import GRUCell, LSTMCell, RNNCell, sigmoid

#: (T, B, I, H)
SHAPES = [(1, 1, 1, 1), (1, 2, 3, 1), (4, 1, 2, 3), (5, 3, 4, 2)]

# --- Gradients -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}I{}H{}".format(*s))
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_finite_differences(kind, num_layers, bias, shape):
    case = make_case(kind, shape, num_layers, bias, seed=10 * num_layers + bias)
    analytic = case.analytic()
    expected_keys = set(param_shapes(GATES[kind], case.cell.config)) | {"x"}
    expected_keys |= {f"state[{i}]" for i in range(case.cell.state_size)}
    assert set(analytic) == expected_keys
    assert_gradients_match(analytic, case.numeric())


def _scale_one_element(grads):
    grads["weight_hh_l1"] = grads["weight_hh_l1"].copy()
    grads["weight_hh_l1"][3, 1] *= 1 + 1e-4


def _flip_one_input_gradient(grads):
    grads["x"] = grads["x"].copy()
    grads["x"][2, 0, 1] *= -1


def _drop_initial_state_gradient(grads):
    grads["state[1]"] = np.zeros_like(grads["state[1]"])


@pytest.mark.parametrize(
    "corrupt", [_scale_one_element, _flip_one_input_gradient, _drop_initial_state_gradient]
)
def test_gradient_checker_catches_wrong_gradients(corrupt):
    case = make_case("lstm", (3, 2, 2, 2), num_layers=2, seed=7)
    analytic, numeric = case.analytic(), case.numeric()
    assert_gradients_match(analytic, numeric)
    corrupt(analytic)
    with pytest.raises(AssertionError, match="relative error"):
        assert_gradients_match(analytic, numeric)


class _GRUWithBackwardBug(GRUCell):
    """A plausible mistake: forgetting that the reset gate scales ``W_hn h + b_hn``'s gradient."""

    @staticmethod
    def step_backward(d_new_state, state, saved):
        d_gi, d_gh, d_state = GRUCell.step_backward(d_new_state, state, saved)
        hidden = d_gi.shape[1] // 3
        d_gh = d_gh.copy()
        d_gh[:, 2 * hidden :] = d_gi[:, 2 * hidden :]
        return d_gi, d_gh, d_state


def test_gradient_checker_catches_a_buggy_cell():
    case = make_case("gru", (3, 2, 2, 2), seed=3, cell_class=_GRUWithBackwardBug)
    with pytest.raises(AssertionError, match="relative error"):
        assert_gradients_match(case.analytic(), case.numeric())


@pytest.mark.parametrize("kind", KINDS)
def test_backward_without_final_state_gradient_means_zero(kind):
    case = make_case(kind, (3, 2, 2, 3), num_layers=2)
    result = case.cell.forward(case.params, case.x, case.state)
    zeros = tuple(np.zeros_like(s) for s in case.state)
    implicit = case.cell.backward(case.params, result.cache, case.w_out)
    explicit = case.cell.backward(case.params, result.cache, case.w_out, zeros)
    np.testing.assert_array_equal(implicit.d_inputs, explicit.d_inputs)
    for name in case.params:
        np.testing.assert_array_equal(implicit.param_grads[name], explicit.param_grads[name])
    for a, b in zip(implicit.d_initial_state, explicit.d_initial_state, strict=True):
        np.testing.assert_array_equal(a, b)


# --- Forward against the equations ---------------------------------------------------------------


def _by_hand_case(kind):
    """T=1, B=2, I=3, H=2, one layer: small enough to write the equations out per sequence."""
    case = make_case(kind, (1, 2, 3, 2), seed=11)
    result = case.cell.forward(case.params, case.x, case.state)
    return case, result


def _logistic(v):
    return 1.0 / (1.0 + np.exp(-v))


def _gate(params, which, index, hidden):
    """Rows ``index*H:(index+1)*H`` of layer 0's ``which`` ("ih" or "hh") weight and bias."""
    rows = slice(index * hidden, (index + 1) * hidden)
    return params[f"weight_{which}_l0"][rows], params[f"bias_{which}_l0"][rows]


def test_rnn_step_by_hand():
    case, result = _by_hand_case("rnn")
    for b in range(2):
        x, h = case.x[0, b], case.state[0][0, b]
        (w_ih, b_ih), (w_hh, b_hh) = _gate(case.params, "ih", 0, 2), _gate(case.params, "hh", 0, 2)
        h_new = np.tanh(w_ih @ x + b_ih + w_hh @ h + b_hh)
        np.testing.assert_allclose(result.outputs[0, b], h_new, rtol=1e-12)
        np.testing.assert_allclose(result.final_state[0][0, b], h_new, rtol=1e-12)


def test_lstm_step_by_hand():
    case, result = _by_hand_case("lstm")
    for b in range(2):
        x, h, c = case.x[0, b], case.state[0][0, b], case.state[1][0, b]

        def pre(index, x=x, h=h):
            (w_i, b_i), (w_h, b_h) = (_gate(case.params, w, index, 2) for w in ("ih", "hh"))
            return w_i @ x + b_i + w_h @ h + b_h

        i, f, g, o = _logistic(pre(0)), _logistic(pre(1)), np.tanh(pre(2)), _logistic(pre(3))
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        np.testing.assert_allclose(result.outputs[0, b], h_new, rtol=1e-12)
        np.testing.assert_allclose(result.final_state[0][0, b], h_new, rtol=1e-12)
        np.testing.assert_allclose(result.final_state[1][0, b], c_new, rtol=1e-12)


def test_gru_step_by_hand():
    case, result = _by_hand_case("gru")
    (w_ir, b_ir), (w_iz, b_iz), (w_in, b_in) = (_gate(case.params, "ih", g, 2) for g in range(3))
    (w_hr, b_hr), (w_hz, b_hz), (w_hn, b_hn) = (_gate(case.params, "hh", g, 2) for g in range(3))
    for b in range(2):
        x, h = case.x[0, b], case.state[0][0, b]
        r = _logistic(w_ir @ x + b_ir + w_hr @ h + b_hr)
        z = _logistic(w_iz @ x + b_iz + w_hz @ h + b_hz)
        n = np.tanh(w_in @ x + b_in + r * (w_hn @ h + b_hn))  # reset gate on (W_hn h + b_hn)
        h_new = (1 - z) * n + z * h
        np.testing.assert_allclose(result.outputs[0, b], h_new, rtol=1e-12)
        np.testing.assert_allclose(result.final_state[0][0, b], h_new, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_weights_without_bias_give_known_values(kind):
    """All-zero parameters: every gate pre-activation is 0, so sigmoid gates are 1/2, tanh 0."""
    cell = CELLS[kind](CellConfig(2, 3, bias=False, dtype="float64"))
    params = {n: np.zeros(s) for n, s in param_shapes(GATES[kind], cell.config).items()}
    state = tuple(np.full((1, 1, 3), 0.8) for _ in range(cell.state_size))
    out, new_state = cell.step(params, np.ones((1, 2)), state)
    expected = {"rnn": 0.0, "lstm": 0.5 * np.tanh(0.4), "gru": 0.4}[kind]
    np.testing.assert_allclose(out, expected, rtol=1e-15)
    if kind == "lstm":
        np.testing.assert_allclose(new_state[1], 0.4, rtol=1e-15)


@pytest.mark.parametrize("kind", KINDS)
def test_layers_stack_outputs_upwards(kind):
    """A two-layer cell is a one-layer cell fed with another one-layer cell's outputs."""
    case = make_case(kind, (4, 2, 3, 2), num_layers=2)
    result = case.cell.forward(case.params, case.x, case.state)
    layer_input = case.x
    for k, input_size in enumerate((3, 2)):
        single = CELLS[kind](CellConfig(input_size, 2, dtype="float64"))
        params = {n.replace(f"_l{k}", "_l0"): v for n, v in case.params.items() if n[-1] == str(k)}
        layer = single.forward(params, layer_input, tuple(s[k : k + 1] for s in case.state))
        for mine, theirs in zip(result.final_state, layer.final_state, strict=True):
            np.testing.assert_allclose(mine[k : k + 1], theirs, rtol=1e-13)
        layer_input = layer.outputs
    np.testing.assert_allclose(result.outputs, layer_input, rtol=1e-13)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize("kind", KINDS)
def test_step_repeated_equals_forward(kind, num_layers, bias):
    case = make_case(kind, (5, 3, 4, 2), num_layers, bias)
    result = case.cell.forward(case.params, case.x, case.state)
    state = case.state
    for t in range(case.x.shape[0]):
        out, state = case.cell.step(case.params, case.x[t], state)
        np.testing.assert_allclose(out, result.outputs[t], rtol=1e-12, atol=1e-15)
    for stepped, whole in zip(state, result.final_state, strict=True):
        np.testing.assert_allclose(stepped, whole, rtol=1e-12, atol=1e-15)


# --- float32 --------------------------------------------------------------------------------------


def _all_results(case: Case) -> dict[str, np.ndarray]:
    result = case.cell.forward(case.params, case.x, case.state)
    back = case.cell.backward(case.params, result.cache, case.w_out, case.w_state)
    found = {"outputs": result.outputs, "d_inputs": back.d_inputs}
    found.update({f"final_state[{i}]": s for i, s in enumerate(result.final_state)})
    found.update({f"d_initial_state[{i}]": s for i, s in enumerate(back.d_initial_state)})
    found.update({f"d_{n}": g for n, g in back.param_grads.items()})
    return found


@pytest.mark.parametrize("num_layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize("kind", KINDS)
def test_float32_agrees_with_float64(kind, num_layers):
    single = _all_results(make_case(kind, (6, 3, 4, 5), num_layers, dtype="float32", seed=5))
    double = _all_results(make_case(kind, (6, 3, 4, 5), num_layers, dtype="float64", seed=5))
    assert single.keys() == double.keys()
    for name, value in single.items():
        assert value.dtype == np.float32, f"{name} is {value.dtype}, not float32"
        scale = np.max(np.abs(double[name]))
        np.testing.assert_allclose(value, double[name], rtol=1e-4, atol=1e-4 * scale, err_msg=name)


def test_sigmoid_is_stable_and_keeps_dtype():
    a = np.array([-1e4, -50.0, 0.0, 50.0, 1e4], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = sigmoid(a)
    assert s.dtype == np.float32
    np.testing.assert_allclose(s, [0.0, np.exp(-50.0), 0.5, 1.0, 1.0], rtol=1e-6, atol=0)


# --- Arguments are left alone ------------------------------------------------------------------


def _frozen(array):
    array = array.copy()
    array.flags.writeable = False
    return array


@pytest.mark.parametrize("kind", KINDS)
def test_forward_and_backward_do_not_modify_their_arguments(kind):
    case = make_case(kind, (4, 2, 3, 2), num_layers=2)
    params = {n: _frozen(v) for n, v in case.params.items()}
    x, state = _frozen(case.x), tuple(_frozen(s) for s in case.state)
    d_out, d_state = _frozen(case.w_out), tuple(_frozen(s) for s in case.w_state)
    # Read-only arrays: any in-place write raises.
    result = case.cell.forward(params, x, state)
    first = case.cell.backward(params, result.cache, d_out, d_state)
    # And the values are unchanged, the cache included: a second backward gives the same answer.
    second = case.cell.backward(params, result.cache, d_out, d_state)
    for name in params:
        np.testing.assert_array_equal(params[name], case.params[name])
        np.testing.assert_array_equal(first.param_grads[name], second.param_grads[name])
    np.testing.assert_array_equal(x, case.x)
    np.testing.assert_array_equal(d_out, case.w_out)
    np.testing.assert_array_equal(first.d_inputs, second.d_inputs)
    for i in range(case.cell.state_size):
        np.testing.assert_array_equal(state[i], case.state[i])
        np.testing.assert_array_equal(d_state[i], case.w_state[i])
        np.testing.assert_array_equal(first.d_initial_state[i], second.d_initial_state[i])


@pytest.mark.parametrize("kind", KINDS)
def test_results_do_not_alias_arguments(kind):
    case = make_case(kind, (1, 2, 2, 2))
    result = case.cell.forward(case.params, case.x, case.state)
    back = case.cell.backward(case.params, result.cache, case.w_out, case.w_state)
    arguments = [*case.params.values(), case.x, *case.state, case.w_out, *case.w_state]
    results = [result.outputs, *result.final_state, back.d_inputs, *back.d_initial_state]
    for produced in results + list(back.param_grads.values()):
        assert not any(np.shares_memory(produced, a) for a in arguments)


# --- Parameters: PyTorch's layout and initialisation ------------------------------------------


def test_lstm_parameter_layout_matches_pytorch():
    cell = LSTMCell(CellConfig(input_size=3, hidden_size=5, num_layers=2))
    params = cell.init_params(np.random.default_rng(0))
    assert [(n, p.shape) for n, p in params.items()] == [
        ("weight_ih_l0", (20, 3)),
        ("weight_hh_l0", (20, 5)),
        ("bias_ih_l0", (20,)),
        ("bias_hh_l0", (20,)),
        ("weight_ih_l1", (20, 5)),
        ("weight_hh_l1", (20, 5)),
        ("bias_ih_l1", (20,)),
        ("bias_hh_l1", (20,)),
    ]
    # torch.nn.LSTM(3, 5, 2).parameters() has 4*5*(3+5+2) + 4*5*(5+5+2) scalars.
    assert parameter_count(params) == 440


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kind", KINDS)
def test_parameter_layout_matches_pytorch(kind, bias):
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    cell = CELLS[kind](CellConfig(input_size=3, hidden_size=4, num_layers=3, bias=bias))
    expected = []
    for k in range(3):
        expected += [(f"weight_ih_l{k}", (gates * 4, 3 if k == 0 else 4))]
        expected += [(f"weight_hh_l{k}", (gates * 4, 4))]
        if bias:
            expected += [(f"bias_ih_l{k}", (gates * 4,)), (f"bias_hh_l{k}", (gates * 4,))]
    params = cell.init_params(np.random.default_rng(0))
    assert [(n, p.shape) for n, p in params.items()] == expected
    assert list(param_shapes(GATES[kind], cell.config).items()) == expected


@pytest.mark.parametrize("kind", KINDS)
def test_init_is_pytorch_uniform_and_dtype_independent(kind):
    hidden = 16
    single, double = (
        CELLS[kind](CellConfig(8, hidden, num_layers=2, dtype=d)).init_params(
            np.random.default_rng(42)
        )
        for d in ("float32", "float64")
    )
    bound = 1 / np.sqrt(hidden)
    values = np.concatenate([p.ravel() for p in double.values()])
    assert np.all(np.abs(values) <= bound)
    assert values.min() < -0.9 * bound and values.max() > 0.9 * bound  # fills the whole range
    for name in double:
        assert single[name].dtype == np.float32 and double[name].dtype == np.float64
        np.testing.assert_array_equal(single[name], double[name].astype(np.float32))


def test_init_uniform_draws_in_order():
    config = CellConfig(2, 4, dtype="float64")
    shapes = {"a": (3, 2), "b": (5,)}
    rng = np.random.default_rng(1)
    expected = rng.uniform(-0.5, 0.5, size=11)
    params = init_uniform(shapes, config, np.random.default_rng(1))
    np.testing.assert_array_equal(params["a"].ravel(), expected[:6])
    np.testing.assert_array_equal(params["b"], expected[6:])


# --- Protocol plumbing and input validation ----------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", KINDS)
def test_protocol_basics(kind, dtype):
    cell = CELLS[kind](CellConfig(3, 4, num_layers=2, dtype=dtype))
    assert isinstance(cell, Cell)
    assert cell.state_size == (2 if kind == "lstm" else 1)
    state = cell.initial_state(5)
    assert len(state) == cell.state_size
    for s in state:
        assert s.shape == (2, 5, 4) and s.dtype == dtype and not s.any()
    host = np.arange(12.0)[::2].reshape(2, 3)  # float64, not contiguous
    array = cell.to_backend(host)
    assert array.dtype == dtype and array.flags.c_contiguous
    np.testing.assert_array_equal(cell.to_host(array), host)
    assert isinstance(cell.to_host(array), np.ndarray)


@pytest.fixture
def lstm_case():
    return make_case("lstm", (4, 2, 3, 5), num_layers=2)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: {"x": c.x[:, :, :2]}, r"x must have shape \(T, B, 3\), got \(4, 2, 2\)"),
        (lambda c: {"x": c.x[0]}, r"x must have shape \(T, B, 3\)"),
        (lambda c: {"x": c.x.astype(np.float32)}, "x must have dtype float64.*got float32"),
        (lambda c: {"x": c.x[:0]}, "at least one time step"),
        (lambda c: {"state": c.state[:1]}, r"initial_state must be a tuple of 2 array\(s\)"),
        (
            lambda c: {"state": (c.state[0][:, :1], c.state[1])},
            r"initial_state h must have shape \(2, 2, 5\), got \(2, 1, 5\)",
        ),
        (
            lambda c: {"params": {k: v for k, v in c.params.items() if k != "bias_hh_l1"}},
            r"missing \['bias_hh_l1'\]",
        ),
        (
            lambda c: {"params": {**c.params, "weight_hh_l0": c.params["weight_hh_l0"].T}},
            r"params\['weight_hh_l0'\] must have shape \(20, 5\), got \(5, 20\)",
        ),
    ],
)
def test_forward_rejects_bad_inputs(lstm_case, mutate, message):
    args = {"params": lstm_case.params, "x": lstm_case.x, "state": lstm_case.state}
    args.update(mutate(lstm_case))
    with pytest.raises(ValueError, match=message):
        lstm_case.cell.forward(args["params"], args["x"], args["state"])


def test_forward_rejects_non_arrays(lstm_case):
    with pytest.raises(TypeError, match=r"x must be a numpy array of shape \(T, B, 3\)"):
        lstm_case.cell.forward(lstm_case.params, lstm_case.x.tolist(), lstm_case.state)


def test_step_rejects_bad_inputs(lstm_case):
    with pytest.raises(ValueError, match=r"x_t must have shape \(B, 3\), got \(1, 2, 3\)"):
        lstm_case.cell.step(lstm_case.params, lstm_case.x[:1], lstm_case.state)


def test_backward_rejects_bad_inputs(lstm_case):
    cell, params = lstm_case.cell, lstm_case.params
    cache = cell.forward(params, lstm_case.x, lstm_case.state).cache
    with pytest.raises(ValueError, match=r"d_outputs must have shape \(4, 2, 5\), got \(3, 2, 5\)"):
        cell.backward(params, cache, lstm_case.w_out[:3])
    with pytest.raises(ValueError, match=r"d_final_state c must have shape \(2, 2, 5\)"):
        cell.backward(params, cache, lstm_case.w_out, (lstm_case.w_state[0], lstm_case.x))
    other = make_case("gru", (4, 2, 3, 5), num_layers=2)
    other_cache = other.cell.forward(other.params, other.x, other.state).cache
    with pytest.raises(ValueError, match="cache must come from forward"):
        cell.backward(params, other_cache, lstm_case.w_out)


def test_registers_every_cell_on_the_numpy_backend():
    manager = pluggy.PluginManager("rnnbench")
    manager.add_hookspecs(hookspecs)
    manager.register(reference)
    registered = []
    manager.hook.rnnbench_register_cells(
        register=lambda name, backend, factory, description="": registered.append(
            (name, backend, factory, description)
        )
    )
    assert [(n, b, f) for n, b, f, _ in registered] == [
        ("rnn", "numpy", RNNCell),
        ("lstm", "numpy", LSTMCell),
        ("gru", "numpy", GRUCell),
    ]
    assert all(description for *_, description in registered)
    for name, _, factory, _ in registered:
        assert factory(CellConfig(2, 3)).kind == name


# --- Property-based ---------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    shape=st.tuples(*(st.integers(1, n) for n in (4, 3, 4, 3))),
    num_layers=st.integers(1, 3),
    bias=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_shapes_step_equals_forward_and_one_gradient_is_right(
    kind, shape, num_layers, bias, seed
):
    case = make_case(kind, shape, num_layers, bias, seed=seed)
    result = case.cell.forward(case.params, case.x, case.state)
    state = case.state
    for t in range(shape[0]):
        out, state = case.cell.step(case.params, case.x[t], state)
        np.testing.assert_allclose(out, result.outputs[t], rtol=1e-12, atol=1e-15)
    for stepped, whole in zip(state, result.final_state, strict=True):
        np.testing.assert_allclose(stepped, whole, rtol=1e-12, atol=1e-15)

    rng = np.random.default_rng(seed)
    inputs = case.inputs()
    name = sorted(inputs)[rng.integers(len(inputs))]
    value, f = inputs[name]
    idx = tuple(int(rng.integers(n)) for n in value.shape)
    analytic = case.analytic()[name][idx]
    numeric = fd_derivative(f, value, idx)
    assert abs(analytic - numeric) / max(abs(analytic) + abs(numeric), FD_FLOOR) < FD_TOL, (
        f"{name}{list(idx)}: analytic {analytic}, fd {numeric}"
    )
