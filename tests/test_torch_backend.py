"""The ``torch`` backend (PyTorch's nn.RNN/LSTM/GRU behind the cell protocol): rnnbench's own
cell checks, gradients against finite differences and the numpy reference on the same
parameters, the thread budget, and training a suite to the reference's loss curve.

Skipped without PyTorch (``tox -e torch`` installs it); ``test_torch_backend_missing.py`` checks
the plugin without it.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

import rnnbench
from rnnbench.testing import check_cell

torch = pytest.importorskip("torch")

CELLS = (("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("lstm", {}), ("gru", {}))
IDS = ("rnn", "rnn-relu", "lstm", "gru")

@pytest.mark.parametrize(("name", "options"), CELLS, ids=IDS)
def test_the_torch_cells_pass_every_cell_check(name, options):
    """Protocol, shapes, finite-difference gradients (float64), step vs forward, no aliasing,
    edge shapes, and outputs and gradients against the numpy reference, 1 and 2 layers, with
    and without bias, in float32 and float64."""
    check_cell((name, "torch"), reference="numpy", options=options).raise_on_failure()


def _case(name, options, num_layers, bias, seed=3):
    config = rnnbench.CellConfig(4, 5, num_layers=num_layers, bias=bias, dtype="float64",
                                 options=options)
    torch_cell = rnnbench.build_cell(name, "torch", config)
    reference = rnnbench.build_cell(name, "numpy", config)
    rng = np.random.default_rng(seed)
    params = torch_cell.init_params(rng)
    steps, batch = 6, 3
    x = rng.normal(size=(steps, batch, 4))
    state = tuple(rng.normal(size=(num_layers, batch, 5)) * 0.5
                  for _ in range(torch_cell.state_size))
    d_out = rng.normal(size=(steps, batch, 5))
    d_final = tuple(rng.normal(size=s.shape) for s in state)
    return torch_cell, reference, params, x, state, d_out, d_final


def _grads(cell, params, x, state, d_out, d_final):
    on = {k: cell.to_backend(v) for k, v in params.items()}
    result = cell.forward(on, cell.to_backend(x), tuple(cell.to_backend(s) for s in state))
    back = cell.backward(on, result.cache, cell.to_backend(d_out),
                         tuple(cell.to_backend(d) for d in d_final))
    host = {f"d_{k}": cell.to_host(v) for k, v in back.param_grads.items()}
    host["d_x"] = cell.to_host(back.d_inputs)
    host.update({f"d_state{i}": cell.to_host(d) for i, d in enumerate(back.d_initial_state)})
    host["outputs"] = cell.to_host(result.outputs)
    host.update({f"final{i}": cell.to_host(s) for i, s in enumerate(result.final_state)})
    return host


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize(("name", "options"), CELLS, ids=IDS)
def test_gradients_match_the_numpy_reference_on_the_same_parameters(name, options, num_layers):
    torch_cell, reference, *args = _case(name, options, num_layers, bias=True)
    ours, theirs = _grads(torch_cell, *args), _grads(reference, *args)
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        np.testing.assert_allclose(ours[key], value, rtol=1e-10, atol=1e-12, err_msg=key)


@pytest.mark.parametrize(("name", "options"), CELLS, ids=IDS)
def test_gradients_match_finite_differences_in_float64(name, options):
    """The loss sum(outputs * d_out) + sum(final * d_final): its gradient from backward against
    central differences, for a few elements of every parameter, x and the initial state."""
    cell, _, params, x, state, d_out, d_final = _case(name, options, 2, bias=True)

    def loss(p, xx, ss):
        result = cell.forward({k: cell.to_backend(v) for k, v in p.items()},
                              cell.to_backend(xx), tuple(cell.to_backend(s) for s in ss))
        total = float(np.sum(cell.to_host(result.outputs) * d_out))
        return total + sum(float(np.sum(cell.to_host(f) * d))
                           for f, d in zip(result.final_state, d_final, strict=True))

    grads = _grads(cell, params, x, state, d_out, d_final)
    rng = np.random.default_rng(0)
    eps = 1e-6
    targets = [(f"d_{k}", ("p", k)) for k in params] + [("d_x", ("x", None))] + [
        (f"d_state{i}", ("s", i)) for i in range(len(state))]
    for key, (kind, which) in targets:
        for _ in range(3):
            p = {k: v.copy() for k, v in params.items()}
            xx, ss = x.copy(), [s.copy() for s in state]
            array = p[which] if kind == "p" else xx if kind == "x" else ss[which]
            index = tuple(rng.integers(n) for n in array.shape)
            base = array[index]
            array[index] = base + eps
            up = loss(p, xx, ss)
            array[index] = base - eps
            down = loss(p, xx, ss)
            numeric = (up - down) / (2 * eps)
            assert grads[key][index] == pytest.approx(numeric, rel=1e-6, abs=1e-8), (key, index)


def test_bias_free_relu_rnn_matches_the_reference():
    torch_cell, reference, *args = _case("rnn", {"nonlinearity": "relu"}, 2, bias=False)
    ours, theirs = _grads(torch_cell, *args), _grads(reference, *args)
    assert not any(k.startswith("d_bias") for k in ours)
    for key, value in theirs.items():
        np.testing.assert_allclose(ours[key], value, rtol=1e-10, atol=1e-12, err_msg=key)


def test_backend_arrays_are_tensors_and_numpy_arguments_are_accepted():
    config = rnnbench.CellConfig(3, 4, dtype="float32")
    cell = rnnbench.build_cell("gru", "torch", config)
    params = cell.init_params(np.random.default_rng(0))
    x = np.zeros((2, 1, 3), np.float32)
    result = cell.forward(params, x, cell.initial_state(1))  # host arrays: copied over
    assert isinstance(result.outputs, torch.Tensor) and result.outputs.dtype == torch.float32
    assert not result.outputs.requires_grad
    with pytest.raises(ValueError, match="dtype"):
        cell.forward(params, x.astype(np.float64), cell.initial_state(1))
    with pytest.raises(ValueError, match="shape"):
        cell.forward(params, np.zeros((2, 1, 5), np.float32), cell.initial_state(1))
    other = rnnbench.build_cell("gru", "torch", rnnbench.CellConfig(3, 4, dtype="float64"))
    with pytest.raises(ValueError, match="cache must come from forward"):
        other.backward(other.init_params(np.random.default_rng(0)), result.cache,
                       np.zeros((2, 1, 4)))


def test_the_run_thread_budget_bounds_torch_threads_and_is_restored():
    from rnnbench.threads import thread_budget

    config = rnnbench.CellConfig(3, 4, dtype="float64")
    cell = rnnbench.build_cell("lstm", "torch", config)
    params = cell.init_params(np.random.default_rng(0))
    before = torch.get_num_threads()
    seen = []
    original = cell.module.forward

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    cell.module.forward = spy
    budget = 1 if before != 1 else 2
    with thread_budget(budget):
        assert rnnbench.current_thread_budget() == budget
        cell.forward(params, np.zeros((2, 1, 3)), cell.initial_state(1))
    assert seen == [budget]
    assert torch.get_num_threads() == before
    assert rnnbench.current_thread_budget() is None


def _records(folder, text):
    path = folder / "suite.yaml"
    path.write_text(textwrap.dedent(text))
    run = rnnbench.run_suite(path, output_dir=folder / "out")
    assert run.failed == 0, [r.error for r in run.records]
    return {(r.config["cell"], r.config["backend"], r.config["task"]): r for r in run.records}


def test_a_suite_trains_with_backend_torch_like_the_reference(tmp_path):
    """Training through the harness (readout, loss, Adam, clipping, forget_bias, an
    encoder-decoder's state hand-over and free-running evaluation through ``step``) gives the
    reference's loss curve in float64, for every cell, with 2 layers."""
    records = _records(tmp_path, """\
        name: torch_vs_numpy
        cell: [{name: rnn, params: {nonlinearity: relu}}, gru]
        backend: [numpy, torch]
        task:
          - name: adding
            params: {length: 5, train_size: 40, validation_size: 20, test_size: 20}
          - name: sine
            params: {length: 6, train_size: 40, validation_size: 20, test_size: 20}
        hidden_size: 5
        num_layers: 2
        dtype: float64
        training: {optimizer: adam, lr: 0.01, batch_size: 20, steps: 6, eval_every: 3,
                   clip: 1.0}
        metrics: [test_loss]
        """)
    (tmp_path / "lstm").mkdir()
    records.update(_records(tmp_path / "lstm", """\
        name: torch_vs_numpy_lstm
        cell: lstm
        backend: [numpy, torch]
        task:
          - name: reverse
            params: {length: 4, train_size: 40, validation_size: 20, test_size: 20}
        hidden_size: 5
        num_layers: 2
        dtype: float64
        training: {optimizer: adam, lr: 0.01, batch_size: 20, steps: 6, eval_every: 3,
                   forget_bias: 1.0}
        metrics: [test_loss]
        """))
    pairs = sorted({(cell, task) for cell, _, task in records})
    assert len(pairs) == 5
    for cell, task in pairs:
        ours, theirs = records[(cell, "torch", task)], records[(cell, "numpy", task)]
        assert ours.status == theirs.status == "ok", (cell, task, ours.error)
        for key in ("train_loss", "val_loss", "grad_norm"):
            got = [point[key] for point in ours.curve]
            want = [point[key] for point in theirs.curve]
            assert np.all(np.isfinite(got)), (cell, task, key)
            np.testing.assert_allclose(got, want, rtol=1e-8, err_msg=f"{cell} {task} {key}")
        assert ours.metrics["test_loss"] == pytest.approx(theirs.metrics["test_loss"], rel=1e-8)


def test_ieee_float32_turns_cudnn_tf32_off_for_the_call_only():
    from rnnbench.plugins.cells.torch_backend import ieee_float32

    rnn = torch.backends.cudnn.rnn
    before = rnn.fp32_precision
    with ieee_float32():
        assert rnn.fp32_precision == "ieee"
    assert rnn.fp32_precision == before


def test_the_aliasing_check_sees_tensor_memory():
    """``no_aliasing`` is only a check for tensors if the kit can tell where they live."""
    from rnnbench.testing.cells import _shares_memory

    base = torch.zeros(4, 3)
    assert _shares_memory(base[:2], base[1:3])
    assert _shares_memory(base.t(), base[3])
    assert not _shares_memory(base[:2], base[2:])
    assert not _shares_memory(base, torch.zeros(4, 3))
    host = np.zeros(5)
    assert _shares_memory(torch.from_numpy(host)[2:], host[3:])  # a tensor over numpy memory


def test_the_cuda_backend_says_why_it_cannot_run_here():
    from rnnbench.plugin_manager import build_host

    entry = build_host().registry.cells[("lstm", "torch-cuda")]
    if torch.cuda.is_available():
        assert entry.unavailable_reason() is None
    else:
        assert "no CUDA GPU" in entry.unavailable_reason()
        with pytest.raises(Exception, match="no CUDA GPU"):
            rnnbench.build_cell("lstm", "torch-cuda", rnnbench.CellConfig(2, 3))


@pytest.mark.parametrize(("name", "options"), CELLS, ids=IDS)
def test_infer_gives_forwards_outputs_without_a_graph(name, options):
    cell, _, params, x, state, _, _ = _case(name, options, 2, bias=True)
    on = {k: cell.to_backend(v) for k, v in params.items()}
    states = tuple(cell.to_backend(s) for s in state)
    outputs, final = cell.infer(on, cell.to_backend(x), states)
    result = cell.forward(on, cell.to_backend(x), states)
    assert not outputs.requires_grad and outputs.grad_fn is None
    np.testing.assert_allclose(cell.to_host(outputs), cell.to_host(result.outputs), rtol=1e-12)
    for ours, theirs in zip(final, result.final_state, strict=True):
        np.testing.assert_allclose(cell.to_host(ours), cell.to_host(theirs), rtol=1e-12)
