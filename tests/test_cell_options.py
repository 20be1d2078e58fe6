"""Cell options (declared at registration, set in suites like task parameters), the rnn cell's
``nonlinearity: relu`` on every CPU backend, and ``training.forget_bias`` with
``CellSupport(forget_gate=...)``.

The CUDA backend's relu is checked in ``test_numba_cuda`` (on a GPU or the simulator), PyTorch
parity in ``test_pytorch_parity``.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

import rnnbench
from rnnbench import CellConfig, CellSupport
from rnnbench.cli import main
from rnnbench.errors import PluginError, SuiteError
from rnnbench.initialisation import initialise
from rnnbench.plugin_manager import build_host
from rnnbench.plugins.cells.numba_cpu import NumbaRNNCell
from rnnbench.plugins.cells.reference import RNNCell
from rnnbench.records import RunRecord
from rnnbench.runner import execute_run
from rnnbench.suite import load_suite
from rnnbench.suite_expand import count_runs
from rnnbench.suite_yaml import read_suite
from rnnbench.testing import cell_checks, check_cell, make_case

HOST = build_host()
RELU = {"nonlinearity": "relu"}
CPU_BACKENDS = ["numpy", "numba-cpu"]


@pytest.fixture
def write(tmp_path: Path):
    def write(text: str, name: str = "suite.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


def problems(path: Path, host=HOST) -> list[str]:
    with pytest.raises(SuiteError) as info:
        load_suite(path, host.registry)
    return [str(p) for p in info.value.problems]


# --- the relu RNN ---------------------------------------------------------------------------


def test_relu_step_by_hand():
    """h' = max(0, W_ih x + b_ih + W_hh h + b_hh), elementwise."""
    cell = rnnbench.build_cell("rnn", "numpy", CellConfig(2, 3, dtype="float64"), options=RELU)
    params = cell.init_params(np.random.default_rng(0))
    x = np.array([[0.5, -1.0]])
    h = np.array([[[0.3, -0.2, 0.1]]])
    pre = (x @ params["weight_ih_l0"].T + params["bias_ih_l0"]
           + h[0] @ params["weight_hh_l0"].T + params["bias_hh_l0"])
    out, _ = cell.step(params, x, (h,))
    np.testing.assert_allclose(out, np.maximum(pre, 0), rtol=1e-15, atol=0)
    assert (pre < 0).any() and (pre > 0).any()  # both sides of the kink are exercised
    tanh_cell = rnnbench.build_cell("rnn", "numpy", CellConfig(2, 3, dtype="float64"))
    np.testing.assert_allclose(tanh_cell.step(params, x, (h,))[0], np.tanh(pre))


def _loss_and_grads(cell, params, x, h0, w_out):
    result = cell.forward(params, x, h0)
    back = cell.backward(params, result.cache, w_out)
    return float(np.sum(result.outputs * w_out)), back


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("num_layers", "bias"), [(1, True), (2, True), (2, False)])
def test_relu_gradients_match_central_differences(backend, seed, num_layers, bias):
    """Full BPTT of the relu RNN against central differences with a tiny step (1e-6), which
    crosses a relu kink with negligible probability, so every seed is checked (the kit's
    fourth-order stencil spans +-2e-3 and crosses kinks on some seeds)."""
    config = CellConfig(3, 4, num_layers, bias, "float64", RELU)
    cell = HOST.build_cell("rnn", backend, config)
    rng = np.random.default_rng(seed)
    params = cell.init_params(rng)
    x = rng.standard_normal((5, 2, 3))
    h0 = (rng.standard_normal((num_layers, 2, 4)),)
    w_out = rng.standard_normal((5, 2, 4))
    _, back = _loss_and_grads(cell, params, x, h0, w_out)
    step = 1e-6

    def numeric(array, index, evaluate):
        saved = array[index]
        array[index] = saved + step
        up = evaluate()
        array[index] = saved - step
        down = evaluate()
        array[index] = saved
        return (up - down) / (2 * step)

    def loss():
        return _loss_and_grads(cell, params, x, h0, w_out)[0]

    checked = 0
    for name, value in params.items():
        for index in np.ndindex(value.shape):
            expected = numeric(value, index, loss)
            assert back.param_grads[name][index] == pytest.approx(expected, rel=1e-6, abs=1e-8)
            checked += 1
    for index in np.ndindex(x.shape):
        assert back.d_inputs[index] == pytest.approx(numeric(x, index, loss), rel=1e-6,
                                                     abs=1e-8)
    for index in np.ndindex(h0[0].shape):
        assert back.d_initial_state[0][index] == pytest.approx(
            numeric(h0[0], index, loss), rel=1e-6, abs=1e-8)
    assert checked == sum(v.size for v in params.values())
    assert (back.param_grads["weight_hh_l0"] != 0).any()


@pytest.mark.parametrize(
    "check",
    [check for backend in CPU_BACKENDS for check in cell_checks(
        ("rnn", backend), options=RELU, seed=1, host=HOST)],
)
def test_relu_rnn_passes_the_kit(check):
    """Every check of the test kit on nonlinearity: relu (gradients against the kit's finite
    differences, step against forward, float32 against float64, agreement with the numpy
    reference, ...). Seed 1: no finite-difference stencil of the kit crosses a relu kink."""
    check()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numba_relu_matches_the_reference_on_larger_shapes(dtype):
    check_cell(("rnn", "numba-cpu"), reference="numpy", checks=["matches_reference"],
               shapes=[(7, 5, 3, 9), (2, 1, 4, 17)], dtypes=[dtype], options=RELU,
               host=HOST).raise_on_failure()


def test_relu_outputs_really_differ_and_have_zeros():
    config = CellConfig(3, 8, dtype="float64")
    case = make_case(RNNCell, (6, 4, 3, 8), dtype="float64")
    relu = RNNCell(CellConfig(3, 8, dtype="float64", options=RELU))
    outputs = relu.forward(case.params, case.x, case.state).outputs
    assert (outputs == 0).mean() > 0.1 and (outputs >= 0).all()
    assert not np.allclose(outputs, case.cell.forward(case.params, case.x, case.state).outputs)
    assert NumbaRNNCell(CellConfig(3, 8, options=RELU)).relu and not NumbaRNNCell(config).relu


def test_a_bad_nonlinearity_given_by_hand_is_refused():
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        RNNCell(CellConfig(2, 3, options={"nonlinearity": "sigmoid"}))


# --- declaring options ------------------------------------------------------------------------


def test_config_options_are_sorted_pairs_and_read_by_name():
    config = CellConfig(2, 3, options={"b": 1, "a": "x"})
    assert config.options == (("a", "x"), ("b", 1))
    assert config.option("a") == "x" and config.option("missing", 5) == 5
    assert CellConfig(2, 3) == CellConfig(2, 3, options=())
    hash(config)  # still usable as a key
    with pytest.raises(ValueError, match="mapping or"):
        CellConfig(2, 3, options=5)


def test_build_cell_fills_in_defaults_and_refuses_unknown_options():
    cell = rnnbench.build_cell("rnn", "numpy", CellConfig(2, 3))
    assert cell.config.options == (("nonlinearity", "tanh"),)
    relu = HOST.build_cell("rnn", "numba-cpu", CellConfig(2, 3, options=RELU))
    assert relu.config.option("nonlinearity") == "relu"
    with pytest.raises(ValueError, match=r"no option 'nonlinearty' .*did you mean 'nonlinearity'"):
        HOST.build_cell("rnn", "numpy", CellConfig(2, 3), options={"nonlinearty": "relu"})
    with pytest.raises(ValueError, match="expected one of 'tanh', 'relu', got 'gelu'"):
        HOST.build_cell("rnn", "numpy", CellConfig(2, 3), options={"nonlinearity": "gelu"})
    with pytest.raises(ValueError, match="cell 'lstm' on backend 'numpy' has no option"):
        HOST.build_cell("lstm", "numpy", CellConfig(2, 3), options=RELU)


def test_every_backend_of_rnn_declares_nonlinearity_and_lstm_its_forget_gate():
    registry = HOST.registry
    for backend in registry.backends_of("rnn"):
        assert registry.cell("rnn", backend).resolve_options() == (("nonlinearity", "tanh"),)
    for backend in registry.backends_of("lstm"):
        assert registry.cell("lstm", backend).supports.forget_gate == 1
    for cell in ("rnn", "gru"):
        for backend in registry.backends_of(cell):
            assert registry.cell(cell, backend).supports.forget_gate is None


def _plugin(tmp_path: Path, body: str, name: str = "opt_plugin") -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_an_options_class_must_be_a_dataclass_with_defaults(tmp_path):
    bad = _plugin(tmp_path, """
        import dataclasses
        import rnnbench
        from rnnbench.plugins.cells.reference import RNNCell

        @dataclasses.dataclass
        class NoDefault:
            width: int

        @rnnbench.hookimpl
        def rnnbench_register_cells(register):
            register("mine", "numpy", RNNCell, options=NoDefault)
    """)
    with pytest.raises(PluginError, match="option 'width' of NoDefault has no default"):
        build_host(plugins=[bad])
    not_a_class = _plugin(tmp_path, Path(bad).read_text().replace("options=NoDefault",
                                                                   "options=dict"), "other")
    with pytest.raises(PluginError, match="is not a dataclass type"):
        build_host(plugins=[not_a_class])
    with pytest.raises(ValueError, match="forget_gate must be a gate index"):
        CellSupport(forget_gate=-1)
    bad_default = _plugin(tmp_path, """
        import dataclasses
        from typing import Literal
        import rnnbench
        from rnnbench.plugins.cells.reference import RNNCell

        @dataclasses.dataclass
        class BadDefault:
            nonlinearity: Literal["tanh", "relu"] = rnnbench.param("sigmoid", "the activation")

        @rnnbench.hookimpl
        def rnnbench_register_cells(register):
            register("mine", "numpy", RNNCell, options=BadDefault)
    """, "bad_default")
    with pytest.raises(PluginError, match="its default options are not valid: option "
                       "'nonlinearity' of BadDefault's defaults: expected one of 'tanh', 'relu', "
                       "got 'sigmoid'"):
        build_host(plugins=[bad_default])


MIXED_PLUGIN = """
    import dataclasses
    from typing import Literal
    import rnnbench
    from rnnbench.plugins.cells.reference import RNNCell

    @dataclasses.dataclass(frozen=True)
    class Opts:
        scale: float = rnnbench.param(1.0, "a scale")
        mode: Literal["a", "b"] = rnnbench.param("a", "a mode")

        def __post_init__(self):
            if self.scale <= 0:
                raise ValueError("scale must be positive")

    @rnnbench.hookimpl
    def rnnbench_register_cells(register):
        register("mixed", "numpy", RNNCell, options=Opts)
        register("mixed", "numba-cpu", RNNCell)  # declares no options
"""


def test_suite_option_problems_name_file_line_and_field(tmp_path, write):
    host = build_host(plugins=[_plugin(tmp_path, MIXED_PLUGIN)])
    suite = write("""
        name: bad
        cell:
          - {name: mixed, params: {scale: [2, "3"], mode: c}}
          - {name: mixed, params: {scal: 2}}
          - {name: mixed, params: {scale: -1}}
        task: adding
        hidden_size: 4
        training: {steps: 1}
    """)
    found = problems(suite, host)
    assert f"{suite}:3: cell[0].params.scale[1]: expected a number, got '3' (a string)" in \
        found[0]
    assert "cell[0].params.mode: expected one of 'a', 'b', got 'c'" in found[1]
    assert f"{suite}:4: cell[1].params.scal: cell 'mixed' has no option 'scal' " \
        "(did you mean 'scale'?)" in found[2]
    assert "cell[2].params.scale: cell 'mixed' rejects scale=-1.0: scale must be positive" in \
        found[3]
    # The numba-cpu backend of the cell does not declare the option: its runs are refused.
    both = write("""
        name: both
        cell: {name: mixed, params: {mode: b}}
        backend: [numpy, numba-cpu]
        task: adding
        hidden_size: 4
        training: {steps: 1}
    """, "both.yaml")
    (problem,) = problems(both, host)
    assert f"{both}:2: cell.params.mode: cell 'mixed' on backend 'numba-cpu' has no option " \
        "'mode'" in problem
    assert "exclude: [{cell: mixed, backend: numba-cpu}]" in problem
    numpy_only = write(both.read_text().replace("[numpy, numba-cpu]", "numpy"), "ok.yaml")
    (run,) = load_suite(numpy_only, host.registry).runs
    assert run.cell_params == (("mode", "b"), ("scale", 1.0))
    assert run.label.startswith("mixed[mode=b]/numpy/")


# --- suites ------------------------------------------------------------------------------------

SUITE = """
    name: opts
    cell: [{name: rnn, params: {nonlinearity: [tanh, relu]}}, lstm]
    backend: [numpy, numba-cpu]
    task: {name: adding, params: {length: 5}}
    hidden_size: 4
    training: {steps: 2}
    include:
      - {cell: rnn, cell.nonlinearity: relu, init: identity}
      - {cell: {name: rnn, params: {nonlinearity: relu}}, lr: 0.01, backend: numpy}
    exclude:
      - {cell.nonlinearity: tanh, backend: numba-cpu}
"""


def test_options_expand_label_and_select(write):
    suite = load_suite(write(SUITE), HOST.registry)
    labels = [run.label for run in suite.runs]
    assert labels[:5] == [
        "rnn[nonlinearity=tanh]/numpy/adding[length=5]/h4x1/float32/lr=0.001,init=pytorch/seed0",
        "rnn[nonlinearity=relu]/numpy/adding[length=5]/h4x1/float32/lr=0.001,init=pytorch/seed0",
        "rnn[nonlinearity=relu]/numba-cpu/adding[length=5]/h4x1/float32/lr=0.001,init=pytorch/seed0",
        "lstm/numpy/adding[length=5]/h4x1/float32/lr=0.001,init=pytorch/seed0",
        "lstm/numba-cpu/adding[length=5]/h4x1/float32/lr=0.001,init=pytorch/seed0",
    ]
    identity = [r for r in suite.runs if r.training.init == "identity"]
    assert [r.cell_label for r in identity] == ["rnn[nonlinearity=relu]"] * 2
    (lr,) = [r for r in suite.runs if r.training.lr == 0.01]
    assert lr.cell_params == (("nonlinearity", "relu"),) and lr.backend == "numpy"
    assert len(suite.runs) == 8
    tanh, relu = suite.runs[0], suite.runs[1]
    assert tanh.config()["cell_params"] == {"nonlinearity": "tanh"}
    assert relu.config()["cell_params"] == {"nonlinearity": "relu"}
    assert "cell_params" not in tanh.identity() and relu.identity()["cell_params"] == RELU
    assert relu.flat()["cell.nonlinearity"] == "relu"
    assert "cell.nonlinearity" not in suite.runs[3].flat()  # lstm declares no options
    assert "cell_params" not in suite.runs[3].config()


def test_a_default_option_keeps_the_run_id_of_a_plain_cell(write):
    """rnn at nonlinearity: tanh is the run it always was: same id as ``cell: rnn``."""
    plain = load_suite(write(SUITE.replace(
        "[{name: rnn, params: {nonlinearity: [tanh, relu]}}, lstm]", "rnn"), "plain.yaml"),
        HOST.registry).runs[0]
    spelled = load_suite(write(SUITE), HOST.registry).runs[0]
    assert plain.label == spelled.label
    assert plain.run_id == spelled.run_id
    assert plain.config() == spelled.config()


def test_count_runs_counts_cell_options(write):
    data = read_suite(write(SUITE)).data
    # base: rnn x2 + lstm = 3 cells x 2 backends = 6; includes: 1 x 2 backends, 1 x 1
    assert count_runs(data) == 6 + 2 + 1
    data["cell"] = [{"name": "rnn", "params": {"nonlinearity": ["tanh", "relu"]}}]
    data["include"] = [{"cell": "rnn", "cell.nonlinearity": ["tanh", "relu"]}]
    assert count_runs(data) == 2 * 2 + 2 * 2


def test_exclude_and_include_keys_are_checked(write):
    suite = write("""
        name: keys
        cell: [rnn, lstm]
        task: adding
        hidden_size: 4
        training: {steps: 1}
        include:
          - {cell: lstm, cell.nonlinearity: relu}
          - {cell: {name: rnn, params: {nonlinearity: relu}}, cell.nonlinearity: tanh}
        exclude:
          - {cell.nonlinarity: relu}
    """)
    found = problems(suite)
    assert any(":7: include[0].cell.nonlinearity: cell 'lstm' has no option 'nonlinearity' "
               "(cell 'lstm' declares no options)" in p for p in found)
    assert any(":8: include[1].cell.nonlinearity: the option 'nonlinearity' of cell 'rnn' is "
               "set twice in this include" in p for p in found)
    assert any(":10: exclude[0].cell.nonlinarity: no cell of this suite has an option "
               "'nonlinarity' (did you mean 'cell.nonlinearity'?)" in p for p in found)
    unknown = write("""
        name: keys
        cell: rnn
        task: adding
        hidden_size: 4
        training: {steps: 1}
        include:
          - {cell.nonlinearity: relu, cel.x: 1}
    """, "unknown.yaml")
    assert any("include[0].cel.x: unknown key 'cel.x'" in p for p in problems(unknown))


def test_records_give_cell_options_as_flat_columns(write, tmp_path):
    suite = load_suite(write(SUITE), HOST.registry)
    record, outcome = execute_run(suite.runs[1], HOST)
    assert record.status == "ok", record.error
    assert record.label.startswith("rnn[nonlinearity=relu]/")
    again = RunRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    flat = again.flat_config()
    assert flat["cell.nonlinearity"] == "relu"
    for key, value in suite.runs[1].flat().items():  # as the spec gives them
        assert flat[key] == value, key
    assert outcome.model.cell.config.option("nonlinearity") == "relu"


def test_a_suite_runs_relu_and_tanh_to_different_numbers(write):
    suite = load_suite(write("""
        name: two
        cell: {name: rnn, params: {nonlinearity: [tanh, relu]}}
        task: {name: adding, params: {length: 5}}
        hidden_size: 4
        training: {steps: 2}
    """), HOST.registry)
    tanh, relu = (execute_run(run, HOST)[0] for run in suite.runs[:2])
    assert tanh.status == relu.status == "ok"
    assert tanh.metrics["test_loss"] != relu.metrics["test_loss"]


# --- forget_bias -------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "encoder."])
def test_forget_bias_goes_to_the_forget_block_of_every_layer(prefix):
    hidden = 3
    rng = np.random.default_rng(0)
    params = {}
    for k in range(2):
        params[f"{prefix}weight_ih_l{k}"] = rng.standard_normal((4 * hidden, 2))
        params[f"{prefix}weight_hh_l{k}"] = rng.standard_normal((4 * hidden, hidden))
        params[f"{prefix}bias_ih_l{k}"] = rng.standard_normal(4 * hidden)
        params[f"{prefix}bias_hh_l{k}"] = rng.standard_normal(4 * hidden)
    before = {k: v.copy() for k, v in params.items()}
    initialise(params, "orthogonal", 1.5, np.random.default_rng(1), 1.0, 1)
    for k in range(2):
        b_ih = params[f"{prefix}bias_ih_l{k}"]
        np.testing.assert_array_equal(b_ih[hidden:2 * hidden],
                                      before[f"{prefix}bias_ih_l{k}"][hidden:2 * hidden] + 1.0)
        for block in (0, 2, 3):
            rows = slice(block * hidden, (block + 1) * hidden)
            np.testing.assert_array_equal(b_ih[rows], before[f"{prefix}bias_ih_l{k}"][rows])
        np.testing.assert_array_equal(params[f"{prefix}bias_hh_l{k}"],
                                      before[f"{prefix}bias_hh_l{k}"])


def test_forget_bias_is_refused_without_a_forget_gate_or_biases():
    params = {"weight_ih_l0": np.zeros((3, 2)), "weight_hh_l0": np.zeros((3, 3)),
              "bias_ih_l0": np.zeros(3), "bias_hh_l0": np.zeros(3)}
    with pytest.raises(ValueError, match="declares no forget gate"):
        initialise(params, "pytorch", None, np.random.default_rng(0), 1.0, None)
    no_bias = {"weight_ih_l0": np.zeros((12, 2)), "weight_hh_l0": np.zeros((12, 3))}
    with pytest.raises(ValueError, match="has no biases"):
        initialise(no_bias, "pytorch", None, np.random.default_rng(0), 1.0, 1)
    untouched = {k: v.copy() for k, v in params.items()}
    initialise(params, "pytorch", None, np.random.default_rng(0), 0.0, None)
    assert all(np.array_equal(params[k], untouched[k]) for k in params)


FORGET = """
    name: forget
    cell: lstm
    backend: [numpy, numba-cpu]
    task: {name: adding, params: {length: 5}}
    hidden_size: 3
    num_layers: 2
    dtype: float64
    training: {steps: 1, forget_bias: [0, 1.0]}
"""


def test_a_run_starts_with_the_forget_biases_raised(write):
    runs = load_suite(write(FORGET), HOST.registry).runs
    assert [r.training.forget_bias for r in runs] == [0.0, 1.0, 0.0, 1.0]
    assert "forget_bias" not in runs[0].config()["training"]  # the default keeps old ids
    assert runs[1].config()["training"]["forget_bias"] == 1.0
    assert runs[0].run_id != runs[1].run_id
    for plain, raised in (runs[:2], runs[2:]):
        _, base = execute_run(plain, HOST)
        _, outcome = execute_run(raised, HOST)
        for k in range(2):
            diff = outcome.initial_params[f"bias_ih_l{k}"] - base.initial_params[f"bias_ih_l{k}"]
            np.testing.assert_allclose(diff, np.repeat([0.0, 1.0, 0.0, 0.0], 3), atol=1e-15)
            np.testing.assert_array_equal(outcome.initial_params[f"bias_hh_l{k}"],
                                          base.initial_params[f"bias_hh_l{k}"])
        for name in base.initial_params:
            if not name.startswith("bias_ih"):
                np.testing.assert_array_equal(outcome.initial_params[name],
                                              base.initial_params[name])


def test_forget_bias_validation_names_the_line_and_the_fix(write):
    suite = write("""
        name: forget
        cell: [rnn, lstm]
        task: adding
        hidden_size: 3
        bias: [true, false]
        training: {steps: 1}
        include:
          - {cell: gru, forget_bias: 1.0}
    """)
    found = problems(suite)
    assert len(found) == 1
    assert f"{suite}:8: include[0].forget_bias: forget_bias 1 is added to the forget-gate " \
        "biases, and cell 'gru' on backend 'numpy' has no forget gate" in found[0]
    assert "{cell: lstm, forget_bias: 1}" in found[0]
    no_bias = write("""
        name: forget
        cell: lstm
        task: adding
        hidden_size: 3
        bias: [true, false]
        training: {steps: 1, forget_bias: 1.0}
    """, "nobias.yaml")
    (problem,) = problems(no_bias)
    assert f"{no_bias}:6: training.forget_bias: " in problem
    assert "runs without biases here (bias: false)" in problem
    assert "exclude: [{cell: lstm, bias: false, forget_bias: 1}]" in problem
    fixed = write(no_bias.read_text() + "exclude: [{cell: lstm, bias: false, forget_bias: 1}]\n",
                  "fixed.yaml")
    assert len(load_suite(fixed, HOST.registry).runs) == 1


def test_mingru_declares_no_forget_gate(write):
    if ("mingru", "numpy") not in HOST.registry.cells:
        pytest.skip("the rnnbench-mingru example is not installed")
    assert HOST.registry.cell("mingru", "numpy").supports.forget_gate is None
    suite = write("""
        name: forget
        cell: mingru
        task: adding
        hidden_size: 3
        training: {steps: 1, forget_bias: 1.0}
    """)
    (problem,) = problems(suite)
    assert "cell 'mingru' on backend 'numpy' has no forget gate" in problem


# --- listings ----------------------------------------------------------------------------------


def test_list_and_plugins_show_cell_options(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "options (default)" in out and "nonlinearity: tanh|relu = 'tanh'" in out
    assert main(["plugins", "--json"]) == 0
    report = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    (option,) = report["reference_cells"]["cell_options"]["rnn/numpy"]
    assert option["name"] == "nonlinearity" and option["type"] == "tanh|relu"
    assert option["default"] == "tanh" and "relu" in option["help"]
    assert "cell_options" not in report["numba_cpu_cells"]["cell_options"].get("lstm", {})


def test_check_cell_takes_options_from_the_command_line(capsys):
    assert main(["check", "cell", "rnn", "--backend", "numba-cpu", "--option",
                 "nonlinearity=relu", "--check", "matches_reference"]) == 0
    assert "rnn[nonlinearity=relu]/numba-cpu" in capsys.readouterr().out
    assert main(["check", "cell", "rnn", "--backend", "numpy", "--option", "nonlin=relu"]) == 2
    assert "has no option 'nonlin' (did you mean 'nonlinearity'?)" in capsys.readouterr().err
    assert main(["check", "cell", "rnn", "--option", "relu"]) == 2
    assert "write NAME=VALUE" in capsys.readouterr().err


def test_a_varied_option_is_in_every_label_so_k_selects_its_default_too(write):
    """With nonlinearity varied, the tanh runs say so: ``-k nonlinearity=tanh`` finds them."""
    from rnnbench.selection import select

    suite = load_suite(write(SUITE), HOST.registry)
    tanh = select(suite.runs, "nonlinearity=tanh")
    assert tanh and all(run.cell_params == (("nonlinearity", "tanh"),) for run in tanh)
    assert all(run.label.startswith("rnn[nonlinearity=tanh]/") for run in tanh)
    assert {run.cell_label for run in suite.runs if run.cell == "lstm"} == {"lstm"}
    # an option nobody varies stays out of the label at its default
    plain = load_suite(write(SUITE_PLAIN_RNN, "plain.yaml"), HOST.registry)
    assert all(run.cell_label == "rnn" for run in plain.runs)


SUITE_PLAIN_RNN = """\
name: plain
cell: rnn
backend: numpy
task: {name: adding, params: {length: 5}}
hidden_size: 4
training: {steps: 2}
"""
