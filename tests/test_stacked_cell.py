"""rnnbench.StackedCell, the base every backend builds on, tested on its own.

The cells here belong to no backend, so a bug in the shared plumbing (layer stacking, state
shapes, argument checks, the backward order) shows up here instead of hiding on both sides of a
parity test:

- :class:`LinearCell`: ``h' = W_ih x + b_ih + W_hh h + b_hh`` in PyTorch's layout (``gates = 1``);
- :class:`IndCell`: a third-party-style cell with its own parameters (an IndRNN-like vector
  recurrent weight, no ``weight_hh``) and two state tensors, ``h' = tanh(W x + u * h)`` and a
  running sum ``s' = s + h'``;
- :class:`BoxedLinearCell`: :class:`LinearCell` whose backend arrays are a wrapper type, as a
  device backend's are, to show that the base touches backend arrays only through its hooks.
"""

from __future__ import annotations

import numpy as np
import pytest

from rnnbench import Cell, CellConfig, StackedCell, init_uniform, param_shapes
from rnnbench.plugins.cells.reference import RNNCell
from rnnbench.testing import FD_TOL, make_case, max_relative_error

# --- Test cells ----------------------------------------------------------------------------------


class LinearCell(StackedCell):
    """A linear recurrence in PyTorch's RNN layout: the smallest cell StackedCell accepts."""

    gates = 1

    def _weights(self, params, k):
        bias = self.config.bias
        return (
            params[f"weight_ih_l{k}"],
            params[f"weight_hh_l{k}"],
            params[f"bias_ih_l{k}"] if bias else 0.0,
            params[f"bias_hh_l{k}"] if bias else 0.0,
        )

    def layer_forward(self, params, k, inputs, state):
        w_ih, w_hh, b_ih, b_hh = self._weights(params, k)
        hs = [state[0]]
        for x_t in inputs:
            hs.append(x_t @ w_ih.T + b_ih + hs[-1] @ w_hh.T + b_hh)
        return np.stack(hs[1:]), (hs[-1],), (inputs, hs)

    def layer_backward(self, params, k, layer_cache, d_outputs, d_final):
        inputs, hs = layer_cache
        w_ih, w_hh, _, _ = self._weights(params, k)
        d_pre = np.empty_like(d_outputs)
        dh = d_final[0]
        for t in reversed(range(len(inputs))):
            d_pre[t] = dh + d_outputs[t]
            dh = d_pre[t] @ w_hh
        both = ([0, 1], [0, 1])
        grads = {
            f"weight_ih_l{k}": np.tensordot(d_pre, inputs, axes=both),
            f"weight_hh_l{k}": np.tensordot(d_pre, np.stack(hs[:-1]), axes=both),
        }
        if self.config.bias:
            grads[f"bias_ih_l{k}"] = d_pre.sum(axis=(0, 1))
            grads[f"bias_hh_l{k}"] = d_pre.sum(axis=(0, 1))
        return d_pre @ w_ih, (dh,), grads


class IndCell(StackedCell):
    """Not PyTorch's layout: ``w_l{k}`` ``(H, I_k)`` and a vector ``u_l{k}`` ``(H,)``; two state
    tensors, ``h`` and the running sum ``s`` of the outputs."""

    state_names = ("h", "s")
    state_size = 2

    def layer_param_shapes(self, k):
        hidden = self.config.hidden_size
        return {f"w_l{k}": (hidden, self.layer_input_size(k)), f"u_l{k}": (hidden,)}

    def layer_forward(self, params, k, inputs, state):
        w, u = params[f"w_l{k}"], params[f"u_l{k}"]
        h, s = state
        hs = [h]
        for x_t in inputs:
            h = np.tanh(x_t @ w.T + u * h)
            s = s + h
            hs.append(h)
        return np.stack(hs[1:]), (h, s), (inputs, hs)

    def layer_backward(self, params, k, layer_cache, d_outputs, d_final):
        inputs, hs = layer_cache
        w, u = params[f"w_l{k}"], params[f"u_l{k}"]
        dh, ds = d_final
        dw, du = np.zeros_like(w), np.zeros_like(u)
        d_inputs = np.empty(inputs.shape, inputs.dtype)
        for t in reversed(range(len(inputs))):
            da = (dh + d_outputs[t] + ds) * (1 - hs[t + 1] ** 2)
            dw += da.T @ inputs[t]
            du += (da * hs[t]).sum(axis=0)
            d_inputs[t] = da @ w
            dh = da * u
        return d_inputs, (dh, ds), {f"w_l{k}": dw, f"u_l{k}": du}


class Box:
    """A stand-in for a device array: no numpy operator works on it unless unwrapped."""

    __array_ufunc__ = None  # numpy must not treat a Box as an array

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    shape = property(lambda self: self.array.shape)
    dtype = property(lambda self: self.array.dtype)

    def __getitem__(self, index):
        return Box(self.array[index])

    def reshape(self, *shape):
        return Box(self.array.reshape(*shape))


def _unbox(value):
    if isinstance(value, Box):
        return value.array
    if isinstance(value, dict):
        return {k: _unbox(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_unbox(v) for v in value)
    return value


def _box(value):
    if isinstance(value, np.ndarray):
        return Box(value)
    if isinstance(value, dict):
        return {k: _box(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_box(v) for v in value)
    return value


class BoxedLinearCell(LinearCell):
    """LinearCell on a 'device' whose arrays are Boxes: every hook a device backend overrides."""

    array_description = "a Box or a numpy array"
    hooks_called: set[str]

    def __init__(self, config):
        super().__init__(config)
        self.hooks_called = set()

    def to_backend(self, array):
        return Box(np.array(array, dtype=self.config.np_dtype))

    def to_host(self, array):
        return array.array.copy() if isinstance(array, Box) else np.asarray(array)

    def zeros(self, shape):
        self.hooks_called.add("zeros")
        return Box(np.zeros(shape, self.config.np_dtype))

    def stack(self, arrays):
        self.hooks_called.add("stack")
        assert all(isinstance(a, Box) for a in arrays)
        return Box(np.stack([a.array for a in arrays]))

    def check_array(self, name, array, shape, *, contiguous=False):
        self.hooks_called.add("check_array")
        if isinstance(array, Box):
            self.check_shape_and_dtype(name, array, shape)
            return array
        return self.to_backend(super().check_array(name, array, shape))

    def layer_forward(self, params, k, inputs, state):
        outputs, final, cache = super().layer_forward(_unbox(params), k, _unbox(inputs),
                                                      _unbox(state))
        return Box(outputs), _box(final), cache

    def layer_backward(self, params, k, layer_cache, d_outputs, d_final):
        d_inputs, d_initial, grads = super().layer_backward(
            _unbox(params), k, layer_cache, _unbox(d_outputs), _unbox(d_final)
        )
        return Box(d_inputs), _box(d_initial), _box(grads)


CELLS = {"linear": LinearCell, "ind": IndCell}


def case_of(name, shape=(4, 3, 2, 3), num_layers=2, bias=True, seed=0):
    return make_case(CELLS[name], shape, num_layers, bias, seed=seed)


def results_of(cell, case):
    """Outputs, final state and every gradient of the case's loss, as host arrays."""
    result = cell.forward(case.params, case.x, case.state)
    back = cell.backward(case.params, result.cache, case.w_out, case.w_state)
    found = {"outputs": result.outputs, "d_inputs": back.d_inputs}
    found |= {f"final[{i}]": s for i, s in enumerate(result.final_state)}
    found |= {f"d_initial[{i}]": d for i, d in enumerate(back.d_initial_state)}
    found |= {f"grad {n}": g for n, g in back.param_grads.items()}
    return {name: cell.to_host(value) for name, value in found.items()}


# --- The layer stack -----------------------------------------------------------------------------


def _single_layer(cell, k, case):
    """A one-layer copy of layer ``k`` of ``case.cell``, with that layer's parameters renamed."""
    config = cell.config
    width = config.input_size if k == 0 else config.hidden_size
    single = type(cell)(CellConfig(width, config.hidden_size, 1, config.bias, config.dtype))
    params = {n.replace(f"_l{k}", "_l0"): v for n, v in case.params.items() if n.endswith(f"_l{k}")}
    return single, params


@pytest.mark.parametrize("name", list(CELLS))
def test_two_layers_are_two_single_layers_composed_by_hand(name):
    case = case_of(name, num_layers=2, seed=3)
    cell = case.cell
    result = cell.forward(case.params, case.x, case.state)
    back = cell.backward(case.params, result.cache, case.w_out, case.w_state)

    (low, low_params), (high, high_params) = (_single_layer(cell, k, case) for k in (0, 1))
    layer_state = [tuple(s[k : k + 1] for s in case.state) for k in (0, 1)]
    first = low.forward(low_params, case.x, layer_state[0])
    second = high.forward(high_params, first.outputs, layer_state[1])
    np.testing.assert_array_equal(result.outputs, second.outputs)
    for i in range(cell.state_size):
        np.testing.assert_array_equal(result.final_state[i][0], first.final_state[i][0])
        np.testing.assert_array_equal(result.final_state[i][1], second.final_state[i][0])

    # Backward: the top layer first, its input gradient is the lower layer's output gradient.
    d_final = [tuple(w[k : k + 1] for w in case.w_state) for k in (0, 1)]
    back_high = high.backward(high_params, second.cache, case.w_out, d_final[1])
    back_low = low.backward(low_params, first.cache, back_high.d_inputs, d_final[0])
    np.testing.assert_array_equal(back.d_inputs, back_low.d_inputs)
    for i in range(cell.state_size):
        np.testing.assert_array_equal(back.d_initial_state[i][0], back_low.d_initial_state[i][0])
        np.testing.assert_array_equal(back.d_initial_state[i][1], back_high.d_initial_state[i][0])
    for k, single in ((0, back_low), (1, back_high)):
        for n, grad in single.param_grads.items():
            np.testing.assert_array_equal(back.param_grads[n.replace("_l0", f"_l{k}")], grad)
    assert list(back.param_grads) == list(cell.param_shapes)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("num_layers", [1, 2, 3], ids=["L1", "L2", "L3"])
@pytest.mark.parametrize("name", list(CELLS))
def test_gradients_match_finite_differences(name, num_layers, bias):
    """Every parameter, the inputs and every initial state tensor, in float64."""
    case = case_of(name, (3, 2, 2, 3), num_layers, bias, seed=num_layers)
    analytic = case.analytic()
    assert set(analytic) == {*case.cell.param_shapes, "x"} | {
        f"state[{i}]" for i in range(case.cell.state_size)
    }
    worst, where = max_relative_error(analytic, case.numeric())
    assert worst < FD_TOL, f"relative error {worst:.3g} at {where}"


@pytest.mark.parametrize("name", list(CELLS))
def test_step_repeated_equals_forward(name):
    case = case_of(name, num_layers=3)
    whole = case.cell.forward(case.params, case.x, case.state)
    state = case.state
    for t, x_t in enumerate(case.x):
        output, state = case.cell.step(case.params, x_t, state)
        np.testing.assert_allclose(output, whole.outputs[t], rtol=1e-13)
    for stepped, final in zip(state, whole.final_state, strict=True):
        np.testing.assert_allclose(stepped, final, rtol=1e-13)


@pytest.mark.parametrize("name", list(CELLS))
def test_no_final_state_gradient_means_zero(name):
    case = case_of(name)
    result = case.cell.forward(case.params, case.x, case.state)
    implicit = case.cell.backward(case.params, result.cache, case.w_out)
    zeros = tuple(np.zeros_like(s) for s in case.state)
    explicit = case.cell.backward(case.params, result.cache, case.w_out, zeros)
    np.testing.assert_array_equal(implicit.d_inputs, explicit.d_inputs)
    for a, b in zip(implicit.d_initial_state, explicit.d_initial_state, strict=True):
        np.testing.assert_array_equal(a, b)
    for n in case.params:
        np.testing.assert_array_equal(implicit.param_grads[n], explicit.param_grads[n])


# --- Protocol plumbing ----------------------------------------------------------------------------


def test_a_stacked_cell_is_a_cell():
    cell = IndCell(CellConfig(2, 3, num_layers=2))
    assert isinstance(cell, Cell) and cell.state_size == 2
    assert repr(cell) == f"IndCell({cell.config!r})"
    state = cell.initial_state(4)
    assert len(state) == 2
    for s in state:
        assert s.shape == (2, 4, 3) and s.dtype == np.float32 and not s.any()
    array = cell.to_backend(np.arange(6.0)[::2])
    assert array.dtype == np.float32 and array.flags.c_contiguous
    assert isinstance(cell.to_host(array), np.ndarray)


def test_own_parameter_layout_drawn_layer_by_layer():
    cell = IndCell(CellConfig(2, 3, num_layers=2, dtype="float64"))
    assert cell.param_shapes == {"w_l0": (3, 2), "u_l0": (3,), "w_l1": (3, 3), "u_l1": (3,)}
    params = cell.init_params(np.random.default_rng(5))
    expected = init_uniform(cell.param_shapes, cell.config, np.random.default_rng(5))
    assert list(params) == list(expected)
    for name in expected:
        np.testing.assert_array_equal(params[name], expected[name])


def test_pytorch_layout_gives_the_same_parameters_as_any_backend_of_it():
    """Same rng, same parameters: LinearCell and the numpy RNN share PyTorch's layout (G = 1)."""
    config = CellConfig(3, 4, num_layers=2, bias=False)
    ours = LinearCell(config)
    assert ours.param_shapes == param_shapes(1, config)
    a = ours.init_params(np.random.default_rng(9))
    b = RNNCell(config).init_params(np.random.default_rng(9))
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_device_hooks_carry_every_backend_array():
    """With backend arrays of another type, forward, step and backward work through the hooks
    alone, return backend arrays, and give the numpy cell's numbers."""
    case = case_of("linear", num_layers=2, seed=4)
    boxed = BoxedLinearCell(case.cell.config)
    assert results_of(boxed, case).keys() == results_of(case.cell, case).keys()
    for name, value in results_of(case.cell, case).items():
        np.testing.assert_array_equal(results_of(boxed, case)[name], value, err_msg=name)

    result = boxed.forward(case.params, case.x, case.state)
    assert isinstance(result.outputs, Box)
    assert all(isinstance(s, Box) for s in result.final_state)
    back = boxed.backward(case.params, result.cache, Box(case.w_out))  # d_final_state None
    assert isinstance(back.d_inputs, Box)
    assert all(isinstance(g, Box) for g in back.param_grads.values())
    output, state = boxed.step(case.params, Box(case.x[0]), boxed.initial_state(3))
    assert isinstance(output, Box) and all(isinstance(s, Box) for s in state)
    assert boxed.hooks_called == {"zeros", "stack", "check_array"}
    with pytest.raises(TypeError, match=r"x must be a Box or a numpy array of shape \(T, B, 2\)"):
        boxed.forward(case.params, case.x.tolist(), case.state)


# --- Argument checks ------------------------------------------------------------------------------


@pytest.fixture
def ind():
    return case_of("ind", (4, 2, 3, 5), num_layers=2)


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda c: {"params": list(c.params.values())}, TypeError, "params must be a dict"),
        (
            lambda c: {"params": {k: v for k, v in c.params.items() if k != "u_l1"}},
            ValueError,
            r"params of IndCell\(.*\) must have exactly the keys .*; missing \['u_l1'\],"
            r" unexpected \[\]",
        ),
        (
            lambda c: {"params": {**c.params, "weight_hh_l0": c.params["w_l0"]}},
            ValueError,
            r"unexpected \['weight_hh_l0'\]",
        ),
        (
            lambda c: {"params": {**c.params, "u_l0": c.params["u_l0"][:2]}},
            ValueError,
            r"params\['u_l0'\] must have shape \(5,\), got \(2,\)",
        ),
        (
            lambda c: {"params": {**c.params, "w_l1": c.params["w_l1"].astype(np.float32)}},
            ValueError,
            r"params\['w_l1'\] must have dtype float64 \(the cell's CellConfig.dtype\), got"
            " float32; convert host arrays with to_backend",
        ),
        (
            lambda c: {"x": c.x.tolist()},
            TypeError,
            r"x must be a numpy array of shape \(T, B, 3\), got list",
        ),
        (
            lambda c: {"x": c.x[..., :2]},
            ValueError,
            r"x must have shape \(T, B, 3\), got \(4, 2, 2\)",
        ),
        (lambda c: {"x": c.x[:0]}, ValueError, "x must have at least one time step and one seq"),
        (
            lambda c: {"state": c.state[:1]},
            ValueError,
            r"initial_state must be a tuple of 2 array\(s\) \(h, s\)",
        ),
        (
            lambda c: {"state": (c.state[0], c.state[1][:1])},
            ValueError,
            r"initial_state s must have shape \(2, 2, 5\), got \(1, 2, 5\)",
        ),
    ],
)
def test_forward_explains_bad_arguments(ind, mutate, error, message):
    args = {"params": ind.params, "x": ind.x, "state": ind.state} | mutate(ind)
    with pytest.raises(error, match=message):
        ind.cell.forward(args["params"], args["x"], args["state"])


def test_step_explains_bad_arguments(ind):
    with pytest.raises(ValueError, match=r"x_t must have shape \(B, 3\), got \(1, 2, 3\)"):
        ind.cell.step(ind.params, ind.x[:1], ind.state)
    with pytest.raises(ValueError, match=r"state h must have shape \(2, 1, 5\), got \(2, 2, 5\)"):
        ind.cell.step(ind.params, ind.x[0, :1], ind.state)


def test_backward_explains_bad_arguments(ind):
    cell = ind.cell
    cache = cell.forward(ind.params, ind.x, ind.state).cache
    with pytest.raises(ValueError, match=r"d_outputs must have shape \(4, 2, 5\), got \(3, 2, 5\)"):
        cell.backward(ind.params, cache, ind.w_out[:3])
    with pytest.raises(ValueError, match=r"d_final_state s must have shape \(2, 2, 5\)"):
        cell.backward(ind.params, cache, ind.w_out, (ind.w_state[0], ind.x))
    with pytest.raises(ValueError, match="d_final_state must be a tuple of 2"):
        cell.backward(ind.params, cache, ind.w_out, ind.w_state[0])
    with pytest.raises(ValueError, match=r"params of IndCell.*missing \['w_l0'"):
        cell.backward({}, cache, ind.w_out)

    message = r"cache must come from forward\(\) of an identical IndCell\("
    with pytest.raises(ValueError, match=message):
        cell.backward(ind.params, "not a cache", ind.w_out)
    other_config = IndCell(CellConfig(3, 5, num_layers=2, dtype="float64", bias=False))
    other_cache = other_config.forward(ind.params, ind.x, ind.state).cache
    with pytest.raises(ValueError, match=message):
        cell.backward(ind.params, other_cache, ind.w_out)

    class Subclass(IndCell):
        pass

    same_config = Subclass(cell.config)
    with pytest.raises(ValueError, match=message):
        cell.backward(ind.params, same_config.forward(ind.params, ind.x, ind.state).cache,
                      ind.w_out)


@pytest.mark.parametrize("batch", [0, -1, 2.0, True, "4"])
def test_initial_state_needs_a_positive_batch(batch):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        LinearCell(CellConfig(2, 3)).initial_state(batch)


def test_config_must_be_a_cell_config():
    with pytest.raises(TypeError, match=r"LinearCell needs a CellConfig, got \{"):
        LinearCell({"input_size": 2, "hidden_size": 3})


# --- A subclass's own mistakes are named where they are made ------------------------------------


def test_the_layer_methods_are_required():
    class Incomplete(StackedCell):
        gates = 1

        def layer_forward(self, params, k, inputs, state):
            raise AssertionError

    with pytest.raises(TypeError, match="layer_backward"):
        Incomplete(CellConfig(2, 3))


def test_layout_must_be_declared():
    class NoLayout(LinearCell):
        gates = None

    with pytest.raises(TypeError, match=r"must set the class attribute gates .* or override"
                                        r" layer_param_shapes"):
        NoLayout(CellConfig(2, 3))


def test_state_names_and_size_must_agree():
    class Mismatch(LinearCell):
        state_names = ("h", "c")

    with pytest.raises(TypeError, match=r"Mismatch: state_size is 1 but state_names"):
        Mismatch(CellConfig(2, 3))


def test_parameter_names_must_differ_between_layers():
    class SameNames(IndCell):
        def layer_param_shapes(self, k):
            return {"w": (self.config.hidden_size, self.layer_input_size(k))}

    SameNames(CellConfig(3, 3, num_layers=1))
    with pytest.raises(TypeError, match=r"layer_param_shapes\(1\) repeats the names \['w'\]"):
        SameNames(CellConfig(3, 3, num_layers=2))


def test_a_layer_result_of_the_wrong_form_is_named():
    class ForgetsTheSum(IndCell):
        def layer_forward(self, params, k, inputs, state):
            outputs, final, cache = super().layer_forward(params, k, inputs, state)
            return outputs, final[:1], cache

    class ForgetsAGradient(IndCell):
        def layer_backward(self, params, k, layer_cache, d_outputs, d_final):
            d_inputs, d_initial, grads = super().layer_backward(
                params, k, layer_cache, d_outputs, d_final
            )
            return d_inputs, d_initial, {n: g for n, g in grads.items() if n != "u_l0"}

    case = case_of("ind", num_layers=2)
    with pytest.raises(TypeError, match=r"ForgetsTheSum.layer_forward of layer 0 must return a"
                                        r" state of 2 array\(s\) \(h, s\)"):
        ForgetsTheSum(case.cell.config).forward(case.params, case.x, case.state)
    cell = ForgetsAGradient(case.cell.config)
    cache = cell.forward(case.params, case.x, case.state).cache
    with pytest.raises(TypeError, match=r"ForgetsAGradient.layer_backward of layer 0 must return"
                                        r" the gradients of \['w_l0', 'u_l0'\], got \['w_l0'\]"):
        cell.backward(case.params, cache, case.w_out)


def test_a_sequence_of_the_wrong_shape_between_layers_is_named():
    """A layer's outputs or d_inputs of the wrong shape would broadcast into the next layer
    and give wrong gradients silently; the base names the method and the layer instead."""

    class NarrowDInputs(IndCell):
        def layer_backward(self, params, k, layer_cache, d_outputs, d_final):
            d_inputs, d_initial, grads = super().layer_backward(
                params, k, layer_cache, d_outputs, d_final
            )
            return (d_inputs[..., :1] if k == 1 else d_inputs), d_initial, grads

    class ShortOutputs(IndCell):
        def layer_forward(self, params, k, inputs, state):
            outputs, final, cache = super().layer_forward(params, k, inputs, state)
            return outputs[:-1], final, cache

    case = case_of("ind", num_layers=2)
    cell = NarrowDInputs(case.cell.config)
    cache = cell.forward(case.params, case.x, case.state).cache
    hidden = case.cell.config.hidden_size
    steps, batch = case.x.shape[:2]
    with pytest.raises(ValueError, match=rf"NarrowDInputs.layer_backward of layer 1 must return "
                                         rf"d_inputs of shape \({steps}, {batch}, {hidden}\)"):
        cell.backward(case.params, cache, case.w_out)
    with pytest.raises(ValueError, match=r"ShortOutputs.layer_forward of layer 0 must return "
                                         r"outputs of shape"):
        ShortOutputs(case.cell.config).forward(case.params, case.x, case.state)
