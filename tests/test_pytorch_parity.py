"""Every CPU backend of every built-in cell against ``torch.nn.RNN``/``LSTM``/``GRU``.

The parameters travel through ``.npz`` files exactly as a user's would (see
:mod:`rnnbench.params_io`): a PyTorch module's ``state_dict`` is exported with ``np.savez`` and
read with :func:`load_params`; in the other direction our :func:`save_params` file is loaded into
the module with ``load_state_dict``. Then forward outputs and final states, and the gradients of
``sum(out*dY) + sum(h_n*dH) (+ sum(c_n*dC))`` with respect to every parameter, the inputs and the
initial state(s), must agree with ``torch.autograd``.

The backends are read off the plugin registry, so a new CPU backend is covered as soon as it is
registered. Skipped without PyTorch, which is not a dependency: ``tox -e torch`` installs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rnnbench import load_params, save_params
from rnnbench.cell import DTYPES, CellConfig
from rnnbench.plugin_manager import build_host

torch = pytest.importorskip("torch")

CELL_KINDS = ("rnn", "lstm", "gru")
T, B, IN, HID = 5, 3, 4, 7
#: (rtol, atol) by dtype: float64 agrees to rounding, float32 to a few ulps of accumulated error.
TOLERANCE = {"float64": (1e-10, 1e-12), "float32": (1e-4, 1e-5)}


def _cpu_backends() -> list[Any]:
    """A pytest param per (cell, backend) registered for the built-in cells, GPU backends left
    out; a backend that cannot run here is reported as skipped, with its reason."""
    registry = build_host().registry
    cases = []
    for (cell, backend), entry in sorted(registry.cells.items()):
        if cell not in CELL_KINDS or "cuda" in backend:
            continue
        reason = entry.unavailable_reason()
        marks = [pytest.mark.skip(reason=f"{backend}: {reason}")] if reason is not None else []
        cases.append(
            pytest.param(cell, backend, entry.factory, id=f"{cell}-{backend}", marks=marks)
        )
    return cases


BACKENDS = _cpu_backends()
SIZES = [
    pytest.param(num_layers, bias, id=f"L{num_layers}-{'bias' if bias else 'nobias'}")
    for num_layers in (1, 2)
    for bias in (True, False)
]


def test_every_cell_has_a_backend_and_no_plugin_is_broken():
    registry = build_host().registry
    assert registry.broken == {}
    assert {p.values[0] for p in BACKENDS} == set(CELL_KINDS)


def torch_module(cell: str, config: CellConfig) -> Any:
    kwargs = dict(
        input_size=config.input_size,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        bias=config.bias,
        batch_first=False,
    )
    if cell == "rnn":
        module = torch.nn.RNN(nonlinearity=config.option("nonlinearity", "tanh"), **kwargs)
    else:
        module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](**kwargs)
    return module.double() if config.dtype == "float64" else module.float()


def export_state_dict(module: Any, path: Path) -> Path:
    """The PyTorch side of the interchange, exactly as documented in rnnbench.params_io."""
    np.savez(path, **{k: v.detach().numpy() for k, v in module.state_dict().items()})
    return path


def import_state_dict(module: Any, path: Path) -> None:
    """The PyTorch side of the interchange, exactly as documented in rnnbench.params_io."""
    module.load_state_dict({k: torch.from_numpy(v) for k, v in np.load(path).items()})


@dataclass
class Comparison:
    """Pairs ``(ours, torch's)`` of host arrays by name: outputs, final state, gradients."""

    pairs: dict[str, tuple[np.ndarray, np.ndarray]]

    def check(self, dtype: str) -> None:
        rtol, atol = TOLERANCE[dtype]
        for name, (ours, theirs) in self.pairs.items():
            assert ours.shape == theirs.shape, name
            assert ours.dtype == np.dtype(dtype), name
            np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=name)

    def errors(self) -> dict[str, tuple[float, float]]:
        """Max absolute and max relative error (relative to max |torch's|) by name."""
        out = {}
        for name, (ours, theirs) in self.pairs.items():
            diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
            scale = float(np.max(np.abs(theirs))) or 1.0
            out[name] = (float(diff.max()), float(diff.max()) / scale)
        return out


def compare(
    cell: str,
    factory: Any,
    config: CellConfig,
    tmp_path: Path,
    seed: int = 0,
    params_from: str = "torch",
) -> Comparison:
    """Run our cell and torch's on the same parameters, inputs and upstream gradients.

    ``params_from="torch"``: the module's own initialisation, exported to ``.npz`` and read with
    :func:`load_params`; ``"ours"``: our ``init_params``, written with :func:`save_params` and
    loaded into the module with ``load_state_dict``.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    module = torch_module(cell, config)
    ours = factory(config)
    path = tmp_path / f"{cell}-{seed}.npz"
    if params_from == "torch":
        params = load_params(export_state_dict(module, path), cell, config)
    else:
        save_params(path, ours.init_params(rng))
        import_state_dict(module, path)
        params = load_params(path, cell, config)
    dtype, layers = config.np_dtype, config.num_layers

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    x = normal(T, B, config.input_size)
    state = tuple(normal(layers, B, config.hidden_size) for _ in range(ours.state_size))
    d_out = normal(T, B, config.hidden_size)
    d_final = tuple(normal(layers, B, config.hidden_size) for _ in range(ours.state_size))

    # Ours.
    backend_params = {k: ours.to_backend(v) for k, v in params.items()}
    fwd = ours.forward(backend_params, ours.to_backend(x), tuple(map(ours.to_backend, state)))
    bwd = ours.backward(
        backend_params, fwd.cache, ours.to_backend(d_out), tuple(map(ours.to_backend, d_final))
    )

    # Torch's.
    tx = torch.from_numpy(x).requires_grad_()
    tstate = [torch.from_numpy(s).requires_grad_() for s in state]
    t_out, t_final = module(tx, tuple(tstate) if cell == "lstm" else tstate[0])
    t_final = t_final if cell == "lstm" else (t_final,)
    loss = (t_out * torch.from_numpy(d_out)).sum()
    for final, weight in zip(t_final, d_final, strict=True):
        loss = loss + (final * torch.from_numpy(weight)).sum()
    loss.backward()

    def host(a: Any) -> np.ndarray:
        return np.asarray(ours.to_host(a))

    def numpy(t: Any) -> np.ndarray:
        return t.detach().numpy()

    names = ("h", "c")
    pairs = {"outputs": (host(fwd.outputs), numpy(t_out))}
    for i, final in enumerate(t_final):
        pairs[f"final {names[i]}"] = (host(fwd.final_state[i]), numpy(final))
    for name, p in module.named_parameters():
        pairs[f"d {name}"] = (host(bwd.param_grads[name]), numpy(p.grad))
    pairs["d inputs"] = (host(bwd.d_inputs), numpy(tx.grad))
    for i, t in enumerate(tstate):
        pairs[f"d initial {names[i]}"] = (host(bwd.d_initial_state[i]), numpy(t.grad))
    assert set(bwd.param_grads) == {n for n, _ in module.named_parameters()}
    return Comparison(pairs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("num_layers", "bias"), SIZES)
@pytest.mark.parametrize(("cell", "backend", "factory"), BACKENDS)
def test_matches_torch_on_torch_parameters(
    tmp_path, cell, backend, factory, num_layers, bias, dtype
):
    config = CellConfig(IN, HID, num_layers=num_layers, bias=bias, dtype=dtype)
    compare(cell, factory, config, tmp_path, seed=num_layers + 2 * bias).check(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("num_layers", "bias"), SIZES)
@pytest.mark.parametrize(("cell", "backend", "factory"), BACKENDS)
def test_our_parameters_load_into_torch(tmp_path, cell, backend, factory, num_layers, bias, dtype):
    config = CellConfig(IN, HID, num_layers=num_layers, bias=bias, dtype=dtype)
    compare(cell, factory, config, tmp_path, seed=10 + num_layers, params_from="ours").check(dtype)


RNN_BACKENDS = [p for p in BACKENDS if p.values[0] == "rnn"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("num_layers", "bias"), SIZES)
@pytest.mark.parametrize(("cell", "backend", "factory"), RNN_BACKENDS)
@pytest.mark.parametrize("params_from", ["torch", "ours"])
def test_relu_rnn_matches_torch(tmp_path, cell, backend, factory, num_layers, bias, dtype,
                                params_from):
    """The rnn cell's option ``nonlinearity: relu`` against ``nn.RNN(nonlinearity='relu')``:
    outputs, final states and every gradient, on torch's parameters and on ours."""
    config = CellConfig(IN, HID, num_layers=num_layers, bias=bias, dtype=dtype,
                        options={"nonlinearity": "relu"})
    compare(cell, factory, config, tmp_path, seed=20 + num_layers + 2 * bias,
            params_from=params_from).check(dtype)
