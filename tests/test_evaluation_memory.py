"""Evaluation in bounded memory: the cache-free forward (``Cell.infer``, optional) run in chunks
over sequences and over time, against the training forward it replaces, and the peak memory of
a whole run that evaluates copy memory at T = 1000."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import ClassVar

import numpy as np
import pytest

from rnnbench import CellContractError, Readout
from rnnbench import model as model_module
from rnnbench.cell import has_infer
from rnnbench.model import build_model, evaluation_chunk, split_range
from rnnbench.plugins.cells.numba_cpu import NumbaGRUCell, NumbaLSTMCell
from rnnbench.plugins.cells.reference import GRUCell, LSTMCell, RNNCell
from rnnbench.plugins.tasks.encoder_decoder import Reverse
from rnnbench.plugins.tasks.many_to_many import CopyMemory
from rnnbench.plugins.tasks.many_to_one import AddingProblem
from rnnbench.plugins.tasks.one_to_many import Sine


class NoInfer:
    """A cell without the optional ``infer``: every other member of the wrapped cell."""

    def __init__(self, cell):
        self._cell = cell

    def __getattr__(self, name):
        if name == "infer":
            raise AttributeError(name)
        return getattr(self._cell, name)


def _no_infer(factory):
    return lambda config: NoInfer(factory(config))


def _training_forward_predictions(model, params, inputs):
    """What evaluation computed before ``infer``: the training forward, cache and all, on the
    whole sequence, then the readout."""
    _, outputs = model.runner.forward(model.runner.backend_params(params), inputs)
    seen = outputs[-1] if model.task.readout == "last" else outputs
    return Readout.apply(params, seen)


def _model(task, factory, hidden=5, layers=1, seed=0):
    data = task.make_data(seed)
    model = build_model(task, data, factory, hidden, num_layers=layers, dtype="float64")
    return model, model.init_params(np.random.default_rng(seed)), data


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Time chunks of 3 steps at 2 sequences x H 5 (budget 2*4*5*3 scalars); chunks of 2
    sequences once a sequence's predictions are 8 scalars or more."""
    monkeypatch.setattr(model_module, "EVAL_CHUNK_SCALARS", 2 * 4 * 5 * 3)
    monkeypatch.setattr(model_module, "EVAL_PREDICTION_SCALARS", 16)


def test_reference_and_stacked_cells_have_infer():
    assert has_infer(LSTMCell) and has_infer(NumbaLSTMCell)
    assert not has_infer(NoInfer(object()))


@pytest.mark.parametrize("factory", [RNNCell, LSTMCell, GRUCell, NumbaLSTMCell, NumbaGRUCell])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("without_infer", [False, True])
def test_chunked_predictions_equal_the_training_forward(factory, layers, without_infer,
                                                        tiny_chunks):
    task = CopyMemory(length=7, recall=2, train_size=4, validation_size=5, test_size=5)
    model, params, data = _model(task, _no_infer(factory) if without_infer else factory,
                                 layers=layers)
    assert model.runner.time_chunk(5) == 1  # 11 steps in 11 chunks: the state carried each time
    assert model.runner.time_chunk(2) == 3
    chunk = split_range(data.test, 1, 3)
    expected = _training_forward_predictions(model, params, chunk.inputs)
    np.testing.assert_allclose(model.predict(params, chunk.inputs), expected, rtol=1e-12,
                               atol=1e-14)


def test_readout_last_keeps_only_the_last_step(tiny_chunks):
    task = AddingProblem(length=9, train_size=4, validation_size=4, test_size=4)
    model, params, data = _model(task, LSTMCell, layers=2)
    predictions = model.predict(params, data.test.inputs)
    assert predictions.shape == (4, 1)
    np.testing.assert_allclose(
        predictions, _training_forward_predictions(model, params, data.test.inputs), rtol=1e-12)


def test_evaluation_over_sequence_chunks_equals_one_chunk(monkeypatch):
    task = CopyMemory(length=7, recall=2, train_size=4, validation_size=7, test_size=7)
    model, params, data = _model(task, LSTMCell)
    whole = model.evaluate(params, data.test)
    assert evaluation_chunk(model, data.test) == model_module.EVAL_CHUNK  # short: as before
    monkeypatch.setattr(model_module, "EVAL_PREDICTION_SCALARS", 2 * 11 * model.output_size + 1)
    assert evaluation_chunk(model, data.test) == 2
    chunked = model.evaluate(params, data.test)
    assert chunked.loss == pytest.approx(whole.loss, rel=1e-12)
    assert chunked.accuracy == pytest.approx(whole.accuracy, rel=1e-12)
    assert chunked.scores == pytest.approx(whole.scores, rel=1e-12)


def test_split_range_is_a_view_of_the_sequences():
    data = CopyMemory(length=3, train_size=4, validation_size=6, test_size=6).make_data(0)
    part = split_range(data.test, 2, 5)
    assert len(part) == 3 and np.shares_memory(part.inputs, data.test.inputs)
    np.testing.assert_array_equal(part.inputs, data.test.batch(np.arange(2, 5)).inputs)
    np.testing.assert_array_equal(part.targets, data.test.batch(np.arange(2, 5)).targets)
    assert split_range(data.test, 0, 6) is data.test


@pytest.mark.parametrize("without_infer", [False, True])
def test_encoder_decoder_evaluation_is_unchanged(without_infer, tiny_chunks):
    task = Reverse(length=4, train_size=4, validation_size=5, test_size=5)
    factory = _no_infer(GRUCell) if without_infer else GRUCell
    model, params, data = _model(task, factory, layers=2)
    split = data.test
    # Before: the encoder's training forward (with its cache) handed its final state over.
    _, encoded, _ = model._encode(params, split.inputs)
    _, outputs = model.decoder.forward(model.decoder.backend_params(params),
                                       split.decoder_inputs, encoded.final_state)
    np.testing.assert_allclose(model.predict(params, split), Readout.apply(params, outputs),
                               rtol=1e-12)
    generated = model.decoder.generate(
        model.decoder.backend_params(params), params, split.decoder_inputs[0],
        split.decoder_inputs.shape[0], task.feedback, encoded.final_state)
    np.testing.assert_allclose(model.evaluation_predictions(params, split), generated,
                               rtol=1e-12)


def test_free_running_evaluation_still_generates(tiny_chunks):
    task = Sine(train_size=4, validation_size=3, test_size=3)
    model, params, data = _model(task, LSTMCell)
    predictions = model.evaluation_predictions(params, data.test)
    assert predictions.shape[:2] == data.test.targets.shape[:2]
    assert np.isfinite(model.evaluate(params, data.test).loss)


class WrongInfer(NoInfer):
    """``infer`` whose outputs lack the time axis."""

    def infer(self, params, x, initial_state):
        outputs, final = self._cell.infer(params, x, initial_state)
        return outputs[0], final


def test_an_infer_result_of_the_wrong_shape_is_named():
    task = CopyMemory(length=3, train_size=4, validation_size=4, test_size=4)
    model, params, data = _model(task, lambda config: WrongInfer(LSTMCell(config)))
    with pytest.raises(CellContractError, match="infer's outputs has shape"):
        model.evaluate(params, data.test)


# --- peak memory of a whole run -------------------------------------------------------------------

#: The issue's target: copy memory at T = 1000, H = 64, 1000 test sequences, under 450 MB peak
#: RSS for the whole process (about 2.1 GB before evaluation ran without its cache in chunks).
PEAK_RSS_LIMIT_MB = 450

# The process's own peak is /proc/self/status's VmHWM: ru_maxrss (RUSAGE_SELF) keeps, across
# exec, the peak of the process it was forked from, i.e. of this test's pytest process (480 MB
# with PyTorch imported by earlier tests, whatever the run itself used).
RUN_AND_MEASURE = textwrap.dedent("""
    import json, resource, sys
    from rnnbench.cli import main
    code = main(["run", sys.argv[1], "-o", sys.argv[2], "-q"])
    with open("/proc/self/status") as status:
        own_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    peak_kb = max(own_kb, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"code": code, "peak_mb": peak_kb / 1024}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB: Linux")
def test_copy_memory_t1000_evaluates_under_450_mb(tmp_path):
    suite = tmp_path / "evalmem.yaml"
    suite.write_text(textwrap.dedent("""
        name: evalmem
        description: copy memory T=1000, H=64, LSTM; peak memory of evaluating 1000 sequences
        cell: lstm
        backend: numba-cpu
        task:
          - name: copy_memory
            params: {length: 1000, train_size: 8, validation_size: 8, test_size: 1000}
        hidden_size: 64
        dtype: float32
        seed: 0
        training: {optimizer: adam, lr: 0.005, batch_size: 4, steps: 1}
        metrics: [test_loss]
    """))
    out = tmp_path / "out"
    # One thread of each kind, as tox -e repro runs: cheap on a shared machine (oversubscribed
    # BLAS and Numba threads made this run take a minute instead of seconds).
    env = {**os.environ, **{name: "1" for name in (
        "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}}
    done = subprocess.run([sys.executable, "-c", RUN_AND_MEASURE, str(suite), str(out)],
                          capture_output=True, text=True, timeout=600, check=False, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, done.stderr[-2000:]
    record = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert np.isfinite(record["metrics"]["test_loss"])
    assert report["peak_mb"] < PEAK_RSS_LIMIT_MB, report


class ScaledLSTM(LSTMCell):
    """A plugin's StackedCell that customises ``forward`` (outputs doubled) but not ``infer``."""

    def forward(self, params, x, initial_state):
        result = super().forward(params, x, initial_state)
        result.outputs = result.outputs * 2.0
        return result


def test_a_cell_that_overrides_forward_is_evaluated_with_its_own_forward(tiny_chunks):
    task = CopyMemory(length=7, recall=2, train_size=4, validation_size=5, test_size=5)
    model, params, data = _model(task, ScaledLSTM)
    expected = _training_forward_predictions(model, params, data.test.inputs)
    np.testing.assert_allclose(model.predict(params, data.test.inputs), expected, rtol=1e-12,
                               atol=1e-14)


class ContiguityProbe(LSTMCell):
    """Records whether each ``infer`` input was C-contiguous (its ``to_backend`` passes arrays
    through, as the protocol allows)."""

    seen: ClassVar[list[bool]] = []

    def to_backend(self, array):
        return array

    def infer(self, params, x, initial_state):
        ContiguityProbe.seen.append(bool(x.flags.c_contiguous))
        return super().infer(params, x, initial_state)


def test_evaluation_chunks_reach_the_cell_contiguous(monkeypatch, tiny_chunks):
    """Sequence chunks are views of the split (strided): each time chunk is made contiguous
    before the cell sees it, as the training batches are."""
    monkeypatch.setattr(model_module, "EVAL_CHUNK", 2)
    ContiguityProbe.seen = []
    task = CopyMemory(length=7, recall=2, train_size=4, validation_size=5, test_size=5)
    model, params, data = _model(task, ContiguityProbe)
    model.evaluate(params, data.test)
    assert ContiguityProbe.seen and all(ContiguityProbe.seen)
