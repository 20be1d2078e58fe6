"""Small local versions of the checks ``rnnbench.testing`` provides (plugin contract 1).

Each function here is one check, named for what it asserts, so that each test calling it becomes
a one-line call to ``rnnbench.testing`` (``check_cell``, ``check_task``, ``check_metric``) once
that is available, and this file can be deleted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rnnbench import Cell, CellConfig, Task

#: Finite differences: step, tolerance on the relative error, and its denominator's floor.
FD_STEP = 1e-3
FD_TOLERANCE = 1e-6
FD_FLOOR = 1e-8

CellFactory = Callable[[CellConfig], Cell]


# --- Cells -------------------------------------------------------------------------------------


def random_case(cell: Cell, steps: int, batch: int, seed: int = 0):
    """Parameters, inputs ``(T, B, I)`` and a non-zero initial state, drawn from ``seed``."""
    config = cell.config
    rng = np.random.default_rng(seed)
    params = cell.init_params(rng)
    x = rng.standard_normal((steps, batch, config.input_size)).astype(config.dtype)
    state_shape = (config.num_layers, batch, config.hidden_size)
    state = tuple(
        rng.standard_normal(state_shape).astype(config.dtype) for _ in range(cell.state_size)
    )
    return params, x, state


def _linear_loss_weights(cell: Cell, steps: int, batch: int, seed: int):
    """Fixed weights of the test loss ``sum(outputs * w_out) + sum_s sum(final[s] * w_s)``,
    whose gradients with respect to outputs and final state are exactly those weights."""
    config = cell.config
    rng = np.random.default_rng(seed + 1)
    w_out = rng.standard_normal((steps, batch, config.hidden_size))
    w_state = tuple(
        rng.standard_normal((config.num_layers, batch, config.hidden_size))
        for _ in range(cell.state_size)
    )
    return w_out.astype(config.dtype), tuple(w.astype(config.dtype) for w in w_state)


def check_gradients(
    factory: CellFactory, config: CellConfig, steps: int = 5, batch: int = 3, seed: int = 0
) -> None:
    """Every gradient ``backward`` returns (each parameter, the inputs, each initial state tensor)
    matches a fourth-order central finite difference of the forward pass, element by element,
    to a relative error below ``FD_TOLERANCE``. Needs ``config.dtype == "float64"``."""
    assert config.dtype == "float64", "finite-difference checks need float64"
    cell = factory(config)
    params, x, state = random_case(cell, steps, batch, seed)
    w_out, w_state = _linear_loss_weights(cell, steps, batch, seed)

    def loss(p=params, x_=x, s=state) -> float:
        result = cell.forward(p, x_, s)
        total = float(np.sum(result.outputs * w_out))
        return total + sum(float(np.sum(f * w)) for f, w in zip(result.final_state, w_state,
                                                                   strict=True))

    result = cell.forward(params, x, state)
    back = cell.backward(params, result.cache, w_out, w_state)
    analytic = {**back.param_grads, "x": back.d_inputs}
    wrt: dict[str, tuple[np.ndarray, Callable[[np.ndarray], float]]] = {
        name: (value, lambda v, name=name: loss(p={**params, name: v}))
        for name, value in params.items()
    }
    wrt["x"] = (x, lambda v: loss(x_=v))
    for i, value in enumerate(state):
        analytic[f"initial_state[{i}]"] = back.d_initial_state[i]
        wrt[f"initial_state[{i}]"] = (
            value, lambda v, i=i: loss(s=(*state[:i], v, *state[i + 1:]))
        )
    assert set(back.param_grads) == set(params), (
        f"backward returned gradients for {sorted(back.param_grads)}, parameters are "
        f"{sorted(params)}"
    )
    for name, (value, f) in wrt.items():
        assert analytic[name].shape == value.shape, (
            f"gradient of {name}: shape {analytic[name].shape}, expected {value.shape}"
        )
        numeric = np.array([_derivative(f, value, idx) for idx in np.ndindex(value.shape)])
        numeric = numeric.reshape(value.shape)
        error = np.abs(analytic[name] - numeric) / np.maximum(
            np.abs(analytic[name]) + np.abs(numeric), FD_FLOOR
        )
        worst = np.unravel_index(np.argmax(error), error.shape)
        assert error[worst] < FD_TOLERANCE, (
            f"gradient of {name}{[int(i) for i in worst]}: backward {analytic[name][worst]}, "
            f"finite difference {numeric[worst]} (relative error {error[worst]:.3g})"
        )


def _derivative(f: Callable[[np.ndarray], float], value: np.ndarray, idx: tuple) -> float:
    """d f / d value[idx]: ``(f(-2h) - 8 f(-h) + 8 f(h) - f(2h)) / 12h``, error O(h^4)."""

    def at(delta: float) -> float:
        moved = value.copy()
        moved[idx] += delta
        return f(moved)

    h = FD_STEP
    return (at(-2 * h) - 8 * at(-h) + 8 * at(h) - at(2 * h)) / (12 * h)


def check_step_matches_forward(
    factory: CellFactory, config: CellConfig, steps: int = 6, batch: int = 2, seed: int = 0
) -> None:
    """Calling ``step`` once per time step gives ``forward``'s outputs and final state."""
    cell = factory(config)
    params, x, state = random_case(cell, steps, batch, seed)
    result = cell.forward(params, x, state)
    tolerance = 1e-12 if config.dtype == "float64" else 1e-5
    stepped = state
    for t in range(steps):
        output, stepped = cell.step(params, x[t], stepped)
        np.testing.assert_allclose(output, result.outputs[t], rtol=tolerance, atol=tolerance,
                                   err_msg=f"step output at t={t}")
    for i, (a, b) in enumerate(zip(stepped, result.final_state, strict=True)):
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance,
                                   err_msg=f"final state [{i}]")


def check_arguments_unchanged(factory: CellFactory, config: CellConfig, seed: int = 0) -> None:
    """``forward``, ``backward`` and ``step`` leave every array they are given as it was."""
    cell = factory(config)
    params, x, state = random_case(cell, 4, 3, seed)
    w_out, w_state = _linear_loss_weights(cell, 4, 3, seed)
    given = [*params.values(), x, *state, w_out, *w_state]
    copies = [a.copy() for a in given]
    result = cell.forward(params, x, state)
    cell.backward(params, result.cache, w_out, w_state)
    cell.step(params, x[0], state)
    for before, after in zip(copies, given, strict=True):
        np.testing.assert_array_equal(before, after)


def check_no_final_state_gradient(factory: CellFactory, config: CellConfig) -> None:
    """``backward(..., d_final_state=None)`` means a zero final-state gradient."""
    cell = factory(config)
    params, x, state = random_case(cell, 4, 3)
    w_out, _ = _linear_loss_weights(cell, 4, 3, 0)
    result = cell.forward(params, x, state)
    implicit = cell.backward(params, result.cache, w_out, None)
    zeros = tuple(np.zeros_like(s) for s in state)
    explicit = cell.backward(params, result.cache, w_out, zeros)
    for name in params:
        np.testing.assert_array_equal(implicit.param_grads[name], explicit.param_grads[name])
    np.testing.assert_array_equal(implicit.d_inputs, explicit.d_inputs)


def check_shapes_and_dtypes(factory: CellFactory, config: CellConfig, steps: int = 3,
                            batch: int = 2) -> None:
    """Every array a cell returns has the shape the protocol states and ``config.dtype``."""
    cell = factory(config)
    params, x, state = random_case(cell, steps, batch)
    dtype, hidden, layers = np.dtype(config.dtype), config.hidden_size, config.num_layers
    result = cell.forward(params, x, state)
    back = cell.backward(params, result.cache, np.ones_like(result.outputs))
    output, new_state = cell.step(params, x[0], state)
    expected = [
        ("outputs", result.outputs, (steps, batch, hidden)),
        ("step output", output, (batch, hidden)),
        ("d_inputs", back.d_inputs, x.shape),
        *((f"final_state[{i}]", s, (layers, batch, hidden))
          for i, s in enumerate(result.final_state)),
        *((f"step state[{i}]", s, (layers, batch, hidden)) for i, s in enumerate(new_state)),
        *((f"d_initial_state[{i}]", s, (layers, batch, hidden))
          for i, s in enumerate(back.d_initial_state)),
        *((f"gradient of {n}", back.param_grads[n], p.shape) for n, p in params.items()),
        *((f"parameter {n}", p, p.shape) for n, p in params.items()),
    ]
    assert len(result.final_state) == len(back.d_initial_state) == cell.state_size
    for what, array, shape in expected:
        assert array.shape == shape, f"{what}: shape {array.shape}, expected {shape}"
        assert array.dtype == dtype, f"{what}: dtype {array.dtype}, expected {dtype}"


def check_init_params(factory: CellFactory, config: CellConfig) -> None:
    """``init_params`` is deterministic by ``rng``, uniform within ±1/sqrt(H) (PyTorch's
    default), and float32 parameters are float64 ones from the same ``rng`` state, cast."""
    cell = factory(config)
    first = cell.init_params(np.random.default_rng(3))
    again = cell.init_params(np.random.default_rng(3))
    other = cell.init_params(np.random.default_rng(4))
    bound = 1.0 / np.sqrt(config.hidden_size)
    for name, value in first.items():
        np.testing.assert_array_equal(value, again[name], err_msg=name)
        assert not np.array_equal(value, other[name]), f"{name} ignores the rng"
        assert np.all(np.abs(value) <= bound), f"{name} outside ±1/sqrt(H)"
    twin = {"float32": "float64", "float64": "float32"}[config.dtype]
    twin_config = CellConfig(config.input_size, config.hidden_size, config.num_layers,
                             config.bias, twin)
    twin_params = factory(twin_config).init_params(np.random.default_rng(3))
    for name, value in first.items():
        np.testing.assert_array_equal(value.astype(np.float32),
                                      twin_params[name].astype(np.float32), err_msg=name)


# --- Tasks -------------------------------------------------------------------------------------


def check_task(task: Task) -> None:
    """``make_data`` is deterministic by seed and differs between seeds; the splits have the
    sizes the task was given and inputs of ``input_size``; ``baseline_loss`` is a finite float;
    ``loss`` returns a finite float and a gradient of the predictions' shape; ``accuracy`` is a
    fraction (or ``None``). For many-to-one tasks (predictions ``(N, O)``)."""
    first, again, other = task.make_data(0), task.make_data(0), task.make_data(1)
    for split in ("train", "validation", "test"):
        a, b, c = (getattr(d, split) for d in (first, again, other))
        np.testing.assert_array_equal(a.inputs, b.inputs, err_msg=f"{split} inputs")
        np.testing.assert_array_equal(a.targets, b.targets, err_msg=f"{split} targets")
        assert not np.array_equal(a.inputs, c.inputs), f"{split} inputs ignore the seed"
        size = getattr(task, f"{split}_size")
        assert len(a) == size, f"{split} has {len(a)} sequences, expected {size}"
        assert a.inputs.shape[2] == first.input_size, f"{split} inputs: {a.inputs.shape}"
    baseline = task.baseline_loss(first)
    assert isinstance(baseline, float) and np.isfinite(baseline), baseline
    test = first.test
    rng = np.random.default_rng(0)
    predictions = rng.standard_normal((len(test), first.output_size))
    value, gradient = task.loss(predictions, test.targets)
    assert isinstance(value, float) and np.isfinite(value), value
    assert gradient.shape == predictions.shape, gradient.shape
    fraction = task.accuracy(predictions, test.targets)
    assert fraction is None or 0.0 <= fraction <= 1.0, fraction


# --- Running a suite ---------------------------------------------------------------------------


def run_suite(
    suite: dict[str, Any], folder: Path, plugins: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Run ``suite`` (a suite file's content) with the ``rnnbench`` command, writing the suite
    file into ``folder`` and the results into ``folder / "results"``, and return its records.
    Fails with the command's output when the command fails."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "suite.yaml"
    path.write_text(json.dumps(suite, indent=2), encoding="utf-8")  # JSON is YAML
    command = [rnnbench_command(), "run", str(path), "-o", str(folder / "results"), "-q"]
    for plugin in plugins:
        command += ["-p", plugin]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return read_records(folder / "results")


def read_records(results: Path) -> list[dict[str, Any]]:
    """The records of a results folder: the lines of its ``results.jsonl``."""
    lines = (results / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def rnnbench_command() -> str:
    """The ``rnnbench`` command of this interpreter's environment (else the first on PATH)."""
    found = shutil.which("rnnbench", path=str(Path(sys.executable).parent)) or shutil.which(
        "rnnbench"
    )
    assert found, "the rnnbench command is not installed"
    return found
