"""The BLAS kernels in use are recorded, compared, and a forced weaker choice is reported."""

from __future__ import annotations

from rnnbench.blas_info import (
    CORETYPE_VAR,
    blas_in_use,
    forced_kernels_note,
    own_openblas_kernels,
)
from rnnbench.compare import choose_mode
from rnnbench.results import capture_environment

OPENBLAS = {"library": "openblas", "version": "0.3.31", "kernels": "Haswell", "file": "lib.so"}


def test_the_environment_records_the_blas_kernels_numpy_runs():
    environment = capture_environment()
    assert environment["blas"] == blas_in_use()
    assert any(lib["library"] == "openblas" and lib["kernels"] for lib in environment["blas"])


def test_openblas_own_choice_is_probed_in_a_fresh_interpreter():
    own = own_openblas_kernels()
    assert isinstance(own, str) and own


def test_no_note_unless_the_variable_forces_other_kernels(monkeypatch):
    monkeypatch.delenv(CORETYPE_VAR, raising=False)
    assert forced_kernels_note([OPENBLAS], own="SkylakeX") is None
    monkeypatch.setenv(CORETYPE_VAR, "Haswell")
    assert forced_kernels_note([OPENBLAS], own="Haswell") is None


def test_a_forced_weaker_choice_is_named_with_the_fix(monkeypatch):
    monkeypatch.setenv(CORETYPE_VAR, "Haswell")
    note = forced_kernels_note([OPENBLAS], own="SkylakeX")
    assert note is not None
    assert "OPENBLAS_CORETYPE=Haswell" in note and "SkylakeX" in note
    assert "env -u OPENBLAS_CORETYPE" in note


def _env(kernels: str | None) -> dict:
    env = {"python": "3.11.7", "machine": "x86_64", "platform": "Linux", "packages": {}}
    if kernels is not None:
        env["blas"] = [dict(OPENBLAS, kernels=kernels)]
    return env


def test_compare_is_exact_only_on_the_same_kernels():
    mode, why = choose_mode(_env("Haswell"), _env("SkylakeX"))
    assert mode == "tolerant" and "BLAS kernels openblas Haswell vs openblas SkylakeX" in why
    assert choose_mode(_env("Haswell"), _env("Haswell"))[0] == "exact"
    # results written before the kernels were recorded compare as before
    assert choose_mode(_env(None), _env("SkylakeX"))[0] == "exact"
