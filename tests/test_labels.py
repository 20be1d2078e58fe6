"""Run labels name every setting that varies in the suite, so ``-k`` and tables can tell runs
apart that differ only in a training setting (lr, clip, forget_bias, ...)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from test_suite import make_registry  # pytest puts tests/ on sys.path (prepend mode)

from rnnbench.selection import select
from rnnbench.suite import load_suite


def suite_of(tmp_path: Path, text: str):
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return load_suite(path, make_registry())


def test_labels_show_the_training_settings_that_vary(tmp_path):
    suite = suite_of(tmp_path, """
        name: lr-clip
        cell: lstm
        task: echo
        hidden_size: 8
        seed: [0, 1]
        training: {steps: 10, lr: [0.01, 0.1], clip: [null, 1.0], forget_bias: 1}
    """)
    labels = [run.label for run in suite.runs]
    assert len(set(labels)) == len(labels) == 8
    assert labels[0] == "lstm/numpy/echo/h8x1/float32/lr=0.01,clip=null/seed0"
    assert "lstm/numpy/echo/h8x1/float32/lr=0.1,clip=1.0/seed1" in labels
    # forget_bias is the same for every run: said once (tables' fixed settings), not per label.
    assert not any("forget_bias" in label for label in labels)


def test_runs_differing_only_in_forget_bias_or_bias_read_differently(tmp_path):
    suite = suite_of(tmp_path, """
        name: fb
        cell: lstm
        task: echo
        hidden_size: 8
        bias: [true, false]
        training: {steps: 10, forget_bias: [0, 1]}
        exclude: [{bias: false, forget_bias: 1}]  # no biases to add it to
    """)
    labels = [run.label for run in suite.runs]
    assert labels == [
        "lstm/numpy/echo/h8x1/float32/bias=true,forget_bias=0.0/seed0",
        "lstm/numpy/echo/h8x1/float32/bias=true,forget_bias=1.0/seed0",
        "lstm/numpy/echo/h8x1/float32/bias=false,forget_bias=0.0/seed0",
    ]


def test_an_include_that_changes_a_setting_labels_every_run(tmp_path):
    suite = suite_of(tmp_path, """
        name: inc
        cell: [rnn, lstm]
        task: echo
        hidden_size: 8
        training: {steps: 10}
        include:
          - {cell: rnn, lr: 0.1}
    """)
    assert [run.label for run in suite.runs] == [
        "rnn/numpy/echo/h8x1/float32/lr=0.001/seed0",
        "lstm/numpy/echo/h8x1/float32/lr=0.001/seed0",
        "rnn/numpy/echo/h8x1/float32/lr=0.1/seed0",
    ]


def test_labels_of_suites_that_vary_no_setting_are_unchanged(tmp_path):
    suite = suite_of(tmp_path, """
        name: plain
        cell: [rnn, lstm]
        task: {name: echo, params: {length: [5, 10]}}
        hidden_size: 8
        training: {steps: 10, lr: 0.01}
    """)
    assert suite.runs[0].label == "rnn/numpy/echo[length=5]/h8x1/float32/seed0"
    assert all(run.label_settings == () for run in suite.runs)


def test_label_settings_are_presentation_only(tmp_path):
    suite = suite_of(tmp_path, """
        name: ids
        cell: lstm
        task: echo
        hidden_size: 8
        training: {steps: 10, lr: [0.01, 0.1]}
    """)
    alone = suite_of(tmp_path, """
        name: ids
        cell: lstm
        task: echo
        hidden_size: 8
        training: {steps: 10, lr: 0.01}
    """)
    assert suite.runs[0].run_id == alone.runs[0].run_id
    assert suite.runs[0] == alone.runs[0]  # label_settings is not compared
    assert suite.runs[0].label != alone.runs[0].label


@pytest.mark.parametrize(("expression", "count"), [
    ("lr=0.1", 2), ("lr=0.01 and clip=null", 1), ("not clip=1.0", 2), ("lstm and lr=0.01", 2),
])
def test_k_selects_by_a_varying_training_setting(tmp_path, expression, count):
    suite = suite_of(tmp_path, """
        name: k
        cell: lstm
        task: echo
        hidden_size: 8
        training: {steps: 10, lr: [0.01, 0.1], clip: [null, 1.0]}
    """)
    assert len(select(suite.runs, expression)) == count
