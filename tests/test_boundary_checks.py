"""Checks at the run boundary: a cell that breaks the protocol fails its run, with an error naming
the plugin, the cell and the parameter, on the first forward, step or backward of the run."""

from __future__ import annotations

import numpy as np
import pytest

from rnnbench import model
from rnnbench.boundary import (
    CellContractError,
    CellOrigin,
    check_backward_result,
    check_forward_result,
)
from rnnbench.cli import main
from rnnbench.plugin_manager import build_host
from rnnbench.records import RunSpec, TrainingConfig
from rnnbench.runner import execute_run

PLUGIN = "broken_cells"


@pytest.fixture(scope="module")
def host(request):
    return build_host(plugins=[str(request.path.parent / "data" / "broken_cells.py")])


def spec(cell: str, task: str = "adding", steps: int = 4, **task_params) -> RunSpec:
    params = {"train_size": 16, "validation_size": 8, "test_size": 8, **task_params}
    if task == "adding":
        params.setdefault("length", 4)
    return RunSpec(
        cell=cell, backend="numpy", task=task, task_params=tuple(sorted(params.items())),
        hidden_size=3, num_layers=1, bias=True, dtype="float64", seed=0,
        training=TrainingConfig(optimizer="adam", lr=0.01, batch_size=8, steps=steps,
                                eval_every=2),
        metrics=("test_loss",), suite="boundary",
    )


def failure(host, run: RunSpec) -> str:
    record, _ = execute_run(run, host)
    assert record.status == "failed", f"{run.cell} was not stopped: {record.status}"
    first_line = record.error.splitlines()[0]
    assert first_line.startswith("CellContractError: ")
    assert "Traceback" not in record.error and "File " not in record.error  # names the plugin
    assert f"plugin {PLUGIN!r} cell {run.cell!r} on backend 'numpy'" in first_line
    return first_line


def test_a_correct_cell_runs(host):
    record, _ = execute_run(spec("lin"), host)
    assert record.status == "ok", record.error
    assert record.metrics["test_loss"] > 0


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("lin_missing_grad", "backward returned no gradient for parameter 'weight_hh_l0'"),
        ("lin_transposed_grad", "backward's gradient for parameter 'weight_ih_l0' has shape "
                                "(2, 3) (transposed?), expected (3, 2)"),
        ("lin_bad_d_inputs", "backward's d_inputs has shape (8, 2), expected (4, 8, 2)"),
        ("lin_bad_state_arity", "backward's d_initial_state has 2 array(s), expected 1"),
        ("lin_bad_final_state", "forward's final_state is a ndarray; it must be a tuple"),
        ("lin_bad_grad_dtype", "backward's gradient for parameter 'weight_ih_l0' has dtype "
                               "float32, expected the cell's dtype float64"),
    ],
)
def test_a_broken_cell_fails_its_run_naming_plugin_cell_and_parameter(host, cell, message):
    assert message in failure(host, spec(cell))


def test_the_error_says_which_parameter(host):
    record, _ = execute_run(spec("lin_missing_grad"), host)
    assert "silently freeze" in record.error


def test_step_is_checked_in_free_running_evaluation(host):
    """sine is evaluated free-running: one step at a time."""
    run = spec("lin_bad_step_state", task="sine", length=4)
    assert "step's new state[0] has shape (8, 3), expected (1, 8, 3)" in failure(host, run)


def test_encoder_decoder_cells_are_checked_too(host):
    run = spec("lin_transposed_grad", task="reverse", length=3, symbols=2)
    assert "parameter 'weight_ih_l0'" in failure(host, run)


def test_only_the_first_result_of_each_kind_is_checked(host, monkeypatch):
    """No per-step cost: one check per cell runner, however many steps and evaluations."""
    calls = {"forward": 0, "backward": 0}

    def counting(kind, original):
        def check(*args, **kwargs):
            calls[kind] += 1
            return original(*args, **kwargs)
        return check

    monkeypatch.setattr(model, "check_forward_result",
                        counting("forward", model.check_forward_result))
    monkeypatch.setattr(model, "check_backward_result",
                        counting("backward", model.check_backward_result))
    record, _ = execute_run(spec("lin", steps=10), host)
    assert record.status == "ok", record.error
    assert calls == {"forward": 1, "backward": 1}


def test_a_suite_with_a_broken_cell_exits_1_and_names_it(tmp_path, capsys, data_dir):
    suite = tmp_path / "broken.yaml"
    suite.write_text(
        "name: broken\n"
        "cell: [lin, lin_missing_grad]\n"
        "task: {name: adding, params: {length: 4, train_size: 16, validation_size: 8, "
        "test_size: 8}}\n"
        "hidden_size: 3\n"
        "dtype: float64\n"
        "training: {optimizer: adam, lr: 0.01, batch_size: 8, steps: 2}\n"
        "metrics: [test_loss]\n"
        f"plugins: [{data_dir / 'broken_cells.py'}]\n"
    )
    assert main(["run", str(suite), "-o", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "lin_missing_grad" in err and "plugin 'broken_cells'" in err
    assert "no gradient for parameter 'weight_hh_l0'" in err


# --- the check functions themselves -----------------------------------------------------------


def _lin(host, name="lin"):
    from rnnbench.cell import CellConfig

    cell = host.registry.cells[(name, "numpy")].factory(CellConfig(2, 3, dtype="float64"))
    rng = np.random.default_rng(0)
    params = cell.init_params(rng)
    x = rng.standard_normal((4, 5, 2))
    state = cell.initial_state(5)
    return cell, params, x, state


def test_check_functions_accept_a_correct_result(host):
    cell, params, x, state = _lin(host)
    result = cell.forward(params, x, state)
    check_forward_result(cell, result, x, state)
    back = cell.backward(params, result.cache, np.ones_like(result.outputs))
    check_backward_result(cell, back, params, result.outputs, result.final_state)


def test_errors_carry_the_parameter_and_default_to_the_class_name(host):
    cell, params, x, state = _lin(host, "lin_missing_grad")
    result = cell.forward(params, x, state)
    back = cell.backward(params, result.cache, np.ones_like(result.outputs))
    with pytest.raises(CellContractError) as error:
        check_backward_result(cell, back, params, result.outputs, result.final_state)
    assert error.value.parameter == "weight_hh_l0"
    assert str(error.value).startswith("cell class 'MissingGradient': ")
    origin = CellOrigin("lin_missing_grad", "numpy", PLUGIN)
    with pytest.raises(CellContractError, match=r"^plugin 'broken_cells' cell 'lin_missing_grad'"):
        check_backward_result(cell, back, params, result.outputs, result.final_state, origin)


def test_an_extra_gradient_and_a_non_array_are_named(host):
    cell, params, x, state = _lin(host)
    result = cell.forward(params, x, state)
    back = cell.backward(params, result.cache, np.ones_like(result.outputs))
    back.param_grads["weight_xx_l0"] = back.param_grads["weight_hh_l0"]
    with pytest.raises(CellContractError, match="'weight_xx_l0', which is not a parameter"):
        check_backward_result(cell, back, params, result.outputs, result.final_state)
    del back.param_grads["weight_xx_l0"]
    back.d_inputs = back.d_inputs.tolist()
    with pytest.raises(CellContractError, match="d_inputs is a list, not an array"):
        check_backward_result(cell, back, params, result.outputs, result.final_state)
    with pytest.raises(CellContractError, match="returned tuple, which has no 'outputs'"):
        check_forward_result(cell, (result.outputs, result.final_state), x, state)
