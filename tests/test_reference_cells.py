"""The numpy reference cells: the oracle for every other backend, so pinned down hard here.

- the test kit's cell checks (``rnnbench.testing``) on every cell, over several shapes, layer
  counts, bias settings and both dtypes: gradients against finite differences for every
  parameter, the inputs and the initial state; ``step`` against ``forward``; arguments left
  alone; no aliasing; ``d_final_state=None``; float32 against float64; T = B = I = H = 1;
- forward against the PyTorch equations written out by hand, one time step at a time;
- the layer stack, PyTorch's parameter layout and init;
- bad inputs fail with errors that say what was expected.
"""

from __future__ import annotations

import numpy as np
import pluggy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnbench import hookspecs
from rnnbench.cell import GATES, Cell, CellConfig, init_uniform, param_shapes, parameter_count
from rnnbench.plugin_manager import build_host
from rnnbench.plugins.cells import reference
from rnnbench.plugins.cells.reference import GRUCell, LSTMCell, RNNCell, sigmoid
from rnnbench.testing import CELL_CHECK_NAMES, cell_checks, check_cell, make_case

CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
KINDS = list(CELLS)
HOST = build_host()
#: (T, B, I, H)
SHAPES = [(1, 1, 1, 1), (1, 2, 3, 1), (4, 1, 2, 3), (5, 3, 4, 2)]
#: The reference is checked on its own; other backends are compared with it in their tests.
OWN_CHECKS = [n for n in CELL_CHECK_NAMES if n not in ("same_init_as_reference",
                                                       "matches_reference")]

# --- The test kit's checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "check",
    [check for kind in KINDS for check in cell_checks(
        (kind, "numpy"), reference=None, checks=OWN_CHECKS, shapes=SHAPES, host=HOST)],
)
def test_cell_checks(check):
    check()


def test_checks_cover_every_variant():
    """The kit tries 1 and 2 layers, with and without bias, in both dtypes, on every shape."""
    report = check_cell(("gru", "numpy"), reference=None, checks=["shapes_and_dtypes"],
                        shapes=SHAPES, host=HOST)
    assert report.passed, report
    assert "of 32 cases (layers 1, 2; bias on, off; float32, float64)" in report.results[0].message


def _case(kind, shape, num_layers=1, bias=True, dtype="float64", seed=0):
    return make_case(CELLS[kind], shape, num_layers, bias, dtype, seed)


# --- Forward against the equations ---------------------------------------------------------------


def _by_hand_case(kind):
    """T=1, B=2, I=3, H=2, one layer: small enough to write the equations out per sequence."""
    case = _case(kind, (1, 2, 3, 2), seed=11)
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
    case = _case(kind, (4, 2, 3, 2), num_layers=2)
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


# --- float32 --------------------------------------------------------------------------------------


def test_sigmoid_is_stable_and_keeps_dtype():
    a = np.array([-1e4, -50.0, 0.0, 50.0, 1e4], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = sigmoid(a)
    assert s.dtype == np.float32
    np.testing.assert_allclose(s, [0.0, np.exp(-50.0), 0.5, 1.0, 1.0], rtol=1e-6, atol=0)


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
    """What the kit's protocol check leaves to each backend: the state size of each cell, and
    contiguous numpy arrays on this one."""
    cell = CELLS[kind](CellConfig(3, 4, num_layers=2, dtype=dtype))
    assert isinstance(cell, Cell)
    assert cell.state_size == (2 if kind == "lstm" else 1)
    host = np.arange(12.0)[::2].reshape(2, 3)  # float64, not contiguous
    array = cell.to_backend(host)
    assert isinstance(array, np.ndarray) and array.dtype == dtype and array.flags.c_contiguous


@pytest.fixture
def lstm_case():
    return _case("lstm", (4, 2, 3, 5), num_layers=2)


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
    other = _case("gru", (4, 2, 3, 5), num_layers=2)
    other_cache = other.cell.forward(other.params, other.x, other.state).cache
    with pytest.raises(ValueError, match="cache must come from forward"):
        cell.backward(params, other_cache, lstm_case.w_out)


def test_registers_every_cell_on_the_numpy_backend():
    manager = pluggy.PluginManager("rnnbench")
    manager.add_hookspecs(hookspecs)
    manager.register(reference)
    registered = []
    manager.hook.rnnbench_register_cells(
        register=lambda name, backend, factory, description="", **declared: registered.append(
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
def test_random_shapes_step_equals_forward_and_gradients_are_right(
    kind, shape, num_layers, bias, seed
):
    """On random shapes: step against forward, and one random element of every gradient
    (every parameter, the inputs, each initial state) against finite differences."""
    check_cell(
        (kind, "numpy"), reference=None, checks=["step_matches_forward", "gradients"],
        shapes=[shape], layers=[num_layers], bias=[bias], dtypes=["float64"], seed=seed,
        fd_elements=1, host=HOST,
    ).raise_on_failure()
