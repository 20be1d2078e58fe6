"""Issue 9's property test: random bytes, random YAML structures and random results folders fed
to ``rnnbench validate``, ``show`` and ``compare`` (through :func:`rnnbench.cli.main`) give exit
0, 1 or 2 and never a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rnnbench.cli as cli
from rnnbench.records import RunRecord

CHECKS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Text that means something to YAML, rich or a terminal.
NASTY = ["[bold]", "[/b]", "[/]", ":x:", ":smile:", "a: b", "- x", "&a", "*a", "{", "}", "[",
         "]", "!!binary", "!!python/object:os.system", "1e23", ".nan", "-.inf", "~", "\x00",
         "\x1b[31m", "\t", "\r", "\u2028", "\ufeff", "%YAML 1.2", "---", "...", "#", "'", '"']
TEXT = st.one_of(st.text(max_size=12), st.sampled_from(NASTY),
                 st.lists(st.sampled_from(NASTY), max_size=4).map("".join))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
#: The keys a suite may hold, so random documents also reach the deeper checks (not
#: ``plugins``: it would import whatever module a random name happens to be).
SUITE_KEYS = ["name", "description", "output", "cell", "backend", "task", "hidden_size",
              "num_layers", "bias", "dtype", "seed", "training", "metrics", "include", "exclude",
              "skip_unavailable", "max_runs", "steps", "epochs", "lr", "momentum", "batch_size",
              "clip", "eval_every", "target_loss", "init", "spectral_radius", "optimizer",
              "params", "length", "task.length"]
KEYS = st.one_of(st.sampled_from(SUITE_KEYS), TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)
    ),
    max_leaves=16,
)
BASE_SUITE = {"name": "t", "cell": "rnn", "task": {"name": "adding", "params": {"length": 3}},
              "hidden_size": 4, "training": {"steps": 2}}
SUITES = st.dictionaries(st.sampled_from(SUITE_KEYS), VALUES, max_size=4).map(
    lambda changes: {**BASE_SUITE, **changes}
)


def _dump(document: Any) -> str:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


YAML_TEXT = st.one_of(
    SUITES.map(_dump),
    VALUES.map(_dump),
    st.lists(st.one_of(TEXT, SUITES.map(_dump)), max_size=5).map("\n".join),
)

GOOD_RECORD = RunRecord(
    run_id="abc123", label="rnn/numpy/adding/h4x1", suite="t",
    config={"cell": "rnn", "backend": "numpy", "task": "adding", "task_params": {"length": 3},
            "hidden_size": 4, "num_layers": 1, "bias": True, "dtype": "float32", "seed": 0,
            "training": {"optimizer": "adam", "lr": 0.001, "steps": 2}},
    status="ok", metrics={"test_loss": 0.5}, curve=[{"step": 1, "loss": 0.7}],
).to_dict()
RECORDS = st.one_of(
    st.just(GOOD_RECORD),
    st.dictionaries(st.sampled_from(list(GOOD_RECORD)), VALUES, max_size=4).map(
        lambda changes: {**GOOD_RECORD, **changes}
    ),
    VALUES,
)
LINES = st.one_of(
    RECORDS.map(lambda record: json.dumps(record, allow_nan=True)),
    TEXT.map(lambda text: text.replace("\n", " ")),
)
JSONL = st.one_of(
    st.lists(LINES, max_size=5).map("\n".join).map(str.encode), st.binary(max_size=80)
)
ENVIRONMENT = st.one_of(st.none(), VALUES.map(json.dumps).map(str.encode), st.binary(max_size=40))


@pytest.fixture(scope="module", autouse=True)
def one_host() -> Iterator[None]:
    """Every call builds the same host (entry-point plugins only); building it once keeps 180
    examples to seconds. No generated suite names ``plugins:``, so nothing is added to it."""
    host = cli.make_host([])
    with mock.patch.object(cli, "make_host", lambda *args, **kwargs: host):
        yield


def run_cli(*argv: str) -> str:
    output = io.StringIO()
    with (
        contextlib.redirect_stdout(output),
        contextlib.redirect_stderr(output),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # skipped records are reported as warnings
        code = cli.main(list(argv))
    text = output.getvalue()
    assert code in (0, 1, 2), text
    assert "Traceback" not in text
    return text


def write_folder(folder: Path, jsonl: bytes, environment: bytes | None) -> Path:
    folder.mkdir()
    (folder / "results.jsonl").write_bytes(jsonl)
    if environment is not None:
        (folder / "environment.json").write_bytes(environment)
    return folder


@CHECKS
@given(content=st.one_of(st.binary(max_size=200), YAML_TEXT.map(str.encode)))
def test_validate_never_gives_a_traceback(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "suite[:x:].yaml"
        path.write_bytes(content)
        run_cli("validate", str(path))


@CHECKS
@given(document=SUITES)
def test_validate_suite_shaped_documents(document: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "suite.yaml"
        path.write_text(_dump(document), encoding="utf-8")
        run_cli("validate", str(path))


@CHECKS
@given(jsonl=JSONL, environment=ENVIRONMENT)
def test_show_never_gives_a_traceback(jsonl: bytes, environment: bytes | None) -> None:
    with tempfile.TemporaryDirectory() as directory:
        folder = write_folder(Path(directory) / "r[bold]", jsonl, environment)
        run_cli("show", str(folder))


@CHECKS
@given(a=JSONL, b=JSONL, env_a=ENVIRONMENT, env_b=ENVIRONMENT)
def test_compare_never_gives_a_traceback(
    a: bytes, b: bytes, env_a: bytes | None, env_b: bytes | None
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        first = write_folder(Path(directory) / "a", a, env_a)
        second = write_folder(Path(directory) / "b", b, env_b)
        run_cli("compare", str(first), str(second))
