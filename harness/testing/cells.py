"""The cell checks: any cell, on any backend, against the Cell protocol and, when there is one, a
reference implementation of the same cell.

Each check is a small function of a :class:`CellSubject` (the cell's factory, what it supports,
the cases to try, the reference), so a pytest suite can run them one by one
(:func:`cell_checks`) and ``rnnbench check cell`` can print them as a table
(:func:`check_cell`). The checks use the protocol only, never a backend's internals:

- ``protocol``: every member; ``config``, ``state_size``, ``initial_state``, ``to_backend`` /
  ``to_host``, and ``init_params`` (host arrays of the cell's dtype, the same for the same seed);
- ``shapes_and_dtypes``: what ``forward``, ``backward`` and ``step`` return (the run boundary's
  own checks, :mod:`rnnbench.boundary`), in every supported dtype, layer count and bias setting;
- ``gradients``: every parameter's, input's and initial state's gradient against finite
  differences in float64;
- ``step_matches_forward``: ``step`` after ``step`` gives ``forward``'s outputs and final state;
- ``infer_matches_forward``: the optional ``infer``, on the whole sequence and on two time
  chunks with the state carried over, gives ``forward``'s outputs and final state;
- ``arguments_unchanged``: ``forward``, ``backward`` and ``step`` leave their arguments alone,
  and a second ``backward`` from the same cache gives the same answer;
- ``no_aliasing``: no result shares memory with an argument, and no two gradients share memory
  (the optimizer and clipping update gradients in place);
- ``zero_final_state_gradient``: ``d_final_state=None`` means zeros;
- ``edge_shapes``: T = B = I = H = 1;
- ``float32_matches_float64``: the same numbers in both dtypes agree within float32's tolerance;
- ``same_init_as_reference``: the same seed gives the same parameters as the reference backend;
- ``matches_reference``: outputs, final state and every gradient agree with the reference
  backend within the dtype's tolerance (1e-9 float64, 1e-4 float32, relative to each array's
  scale).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnbench.boundary import (
    CellContractError,
    array_dtype,
    check_backward_result,
    check_forward_result,
    check_step_result,
)
from rnnbench.cell import CELL_MEMBERS, DTYPES, Cell, CellConfig, CellSupport, has_infer
from rnnbench.errors import RnnbenchError
from rnnbench.plugin_manager import PluginHost
from rnnbench.testing.cases import (
    FD_TOL,
    SAME_CELL_TOLERANCE,
    TOLERANCE,
    CellCase,
    CellFactory,
    Shape,
    make_case,
    max_relative_error,
    scaled_error,
    worst_scaled_error,
)
from rnnbench.testing.lookup import default_reference, find_cell, load_host
from rnnbench.testing.report import (
    Check,
    CheckReport,
    Failed,
    NamedCheck,
    Skipped,
    run_checks,
    select_checks,
)

#: The cases every check runs by default: small, so the whole set takes seconds.
DEFAULT_SHAPES: tuple[Shape, ...] = ((3, 2, 2, 3),)
#: The smallest case: one step, one sequence, one input, one hidden unit.
EDGE_SHAPE: Shape = (1, 1, 1, 1)
#: Layer counts tried by default (those the cell supports).
DEFAULT_LAYERS = (1, 2)

#: A cell given by name: ``(cell name, backend)``, built through the plugin manager.
RegisteredCell = tuple[str, str]


@dataclass
class CellSubject:
    """A cell under test: how to build it, what it supports, which cases to try, and the
    reference implementation to compare it with (``None``, with the reason, when there is none).
    """

    label: str
    factory: CellFactory
    dtypes: tuple[str, ...]
    variants: tuple[tuple[int, bool], ...]  # (num_layers, bias)
    shapes: tuple[Shape, ...] = DEFAULT_SHAPES
    seed: int = 0
    fd_elements: int | None = None
    reference: CellFactory | None = None
    reference_label: str = ""
    #: The reference's support (its dtypes and variants bound what is compared).
    reference_supports: CellSupport = field(default_factory=CellSupport)
    #: Why there is no reference, when there is none.
    no_reference: str = "no reference implementation was given"
    #: The cell options every case is built with (``CellConfig.options``), and the reference's
    #: (the same options, completed with the reference's own defaults).
    options: tuple[tuple[str, Any], ...] = ()
    reference_options: tuple[tuple[str, Any], ...] = ()
    _cells: dict[tuple[int, CellConfig], Cell] = field(default_factory=dict, repr=False)

    def config(self, input_size: int, hidden_size: int, num_layers: int, bias: bool,
               dtype: str) -> CellConfig:
        """The config of one case, with the subject's options."""
        return CellConfig(input_size, hidden_size, num_layers, bias, dtype, self.options)

    def cell(self, config: CellConfig, factory: CellFactory | None = None) -> Cell:
        """The cell for ``config`` (one per config: a backend may compile on first use); the
        reference is built with the reference's options."""
        factory = factory or self.factory
        if factory is self.reference and factory is not self.factory:
            config = dataclasses.replace(config, options=self.reference_options)
        key = (id(factory), config)
        if key not in self._cells:
            try:
                self._cells[key] = factory(config)
            except Exception as exc:
                raise Failed(
                    f"factory({config}) raised {type(exc).__name__}: {exc}; if the cell does "
                    "not support this, declare it: register(..., supports=rnnbench.CellSupport("
                    "dtypes=..., max_layers=..., bias=...))"
                ) from exc
        return self._cells[key]

    def case(self, shape: Shape, num_layers: int, bias: bool, dtype: str,
             factory: CellFactory | None = None) -> CellCase:
        _, _, inputs, hidden = shape
        config = self.config(inputs, hidden, num_layers, bias, dtype)
        cell = self.cell(config, factory)
        return make_case(lambda _: cell, shape, num_layers, bias, dtype, self.seed)

    def cases(self, shapes: Sequence[Shape] | None = None,
              dtypes: Sequence[str] | None = None) -> Iterator[CellCase]:
        """One case per shape, variant and dtype."""
        for shape in self.shapes if shapes is None else shapes:
            for num_layers, bias in self.variants:
                for dtype in self.dtypes if dtypes is None else dtypes:
                    yield self.case(shape, num_layers, bias, dtype)

    def require_reference(self) -> CellFactory:
        if self.reference is None:
            raise Skipped(self.no_reference)
        return self.reference


# --- the checks -----------------------------------------------------------------------------


def check_protocol(subject: CellSubject) -> str:
    num_layers, bias = subject.variants[-1]
    for dtype in subject.dtypes:
        config = subject.config(2, 3, num_layers, bias, dtype)
        cell = subject.cell(config)
        missing = [name for name in CELL_MEMBERS if not hasattr(cell, name)]
        if missing:
            raise Failed(f"{type(cell).__name__} lacks {', '.join(missing)} (see rnnbench.Cell)")
        if cell.config != config:
            raise Failed(f"factory({config}) built a cell whose config is {cell.config}")
        size = cell.state_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise Failed(f"state_size is {size!r}; it must be a positive integer")
        _check_initial_state(cell, config)
        _check_conversions(cell, config)
        count = _check_init_params(cell, config, subject.seed)
    return (f"state_size {size}; {count} parameter values at I=2 H=3 L{num_layers}; "
            f"dtypes {', '.join(subject.dtypes)}")


def _check_initial_state(cell: Cell, config: CellConfig) -> None:
    state = cell.initial_state(5)
    if not isinstance(state, tuple) or len(state) != cell.state_size:
        raise Failed(f"initial_state(5) returned {type(state).__name__} of "
                     f"{len(state) if isinstance(state, (tuple, list)) else '?'} item(s); "
                     f"expected a tuple of state_size={cell.state_size} arrays")
    expected = (config.num_layers, 5, config.hidden_size)
    for index, array in enumerate(state):
        host = np.asarray(cell.to_host(array))
        if host.shape != expected or host.dtype != config.np_dtype or host.any():
            raise Failed(f"initial_state(5)[{index}] is {host.dtype}{list(host.shape)} "
                         f"{'non-zero' if host.any() else 'zeros'}; expected zeros of "
                         f"{config.dtype}{list(expected)}")


def _check_conversions(cell: Cell, config: CellConfig) -> None:
    host = np.arange(12.0)[::2].reshape(2, 3)  # float64 and not contiguous
    array = cell.to_backend(host)
    if array_dtype(array) != config.np_dtype:
        raise Failed(f"to_backend(float64 array) gave dtype {getattr(array, 'dtype', None)}, "
                     f"expected the cell's {config.dtype}")
    back = cell.to_host(array)
    if not isinstance(back, np.ndarray):
        raise Failed(f"to_host returned a {type(back).__name__}, not a numpy array")
    if back.shape != host.shape or not np.array_equal(back, host.astype(config.np_dtype)):
        raise Failed(f"to_host(to_backend(a)) is {back.tolist()}, not {host.tolist()}")


def _check_init_params(cell: Cell, config: CellConfig, seed: int) -> int:
    first = cell.init_params(np.random.default_rng(seed))
    if not isinstance(first, dict) or not first:
        raise Failed(f"init_params returned {first!r}; expected a non-empty dict of arrays")
    for name, value in first.items():
        if not isinstance(name, str):
            raise Failed(f"init_params has a key {name!r}; parameter names are strings")
        if not isinstance(value, np.ndarray) or value.dtype != config.np_dtype:
            raise Failed(f"init_params()[{name!r}] is a {type(value).__name__} of dtype "
                         f"{getattr(value, 'dtype', '?')}; expected a host numpy array of "
                         f"{config.dtype}")
    again = cell.init_params(np.random.default_rng(seed))
    if list(again) != list(first) or not all(np.array_equal(again[n], first[n]) for n in first):
        raise Failed("init_params gave different parameters for the same generator state")
    other = cell.init_params(np.random.default_rng(seed + 1))
    if all(np.array_equal(other[n], first[n]) for n in first):
        raise Failed("init_params gave the same parameters for different generator states; it "
                     "must draw from the generator it is given")
    return int(sum(value.size for value in first.values()))


def _contract(case: CellCase, origin: str) -> None:
    """The run boundary's checks on one case's forward, backward and step results."""
    cell = case.cell
    params, x, state = case.backend_params(), cell.to_backend(case.x), case.backend_state()
    try:
        result = cell.forward(params, x, state)
        check_forward_result(cell, result, x, state, origin)
        d_outputs = cell.to_backend(case.w_out)
        back = cell.backward(params, result.cache, d_outputs, case.backend_state(case.w_state))
        check_backward_result(cell, back, params, d_outputs, result.final_state, origin)
        back = cell.backward(params, result.cache, d_outputs)
        check_backward_result(cell, back, params, d_outputs, result.final_state, origin)
        x_t = cell.to_backend(case.x[0])
        output, new_state = cell.step(params, x_t, state)
        check_step_result(cell, output, new_state, x_t, state, origin)
    except CellContractError as exc:
        raise Failed(f"{case.label}: {exc.problem}") from exc


def check_shapes_and_dtypes(subject: CellSubject) -> str:
    count = 0
    for case in subject.cases():
        _contract(case, subject.label)
        count += 1
    return f"forward, backward and step results of {count} cases ({_variants(subject)})"


def _gradients(subject: CellSubject, cases: Sequence[CellCase]) -> tuple[float, int]:
    worst, values = 0.0, 0
    for case in cases:
        _contract(case, subject.label)
        numeric = case.numeric(subject.fd_elements, subject.seed)
        try:
            error, where = max_relative_error(case.analytic(), numeric)
        except ValueError as exc:
            raise Failed(f"{case.label}: {exc}") from exc
        if not error < FD_TOL:
            raise Failed(f"{case.label}: relative error {error:.3g} at {where} "
                         f"(tolerance {FD_TOL:g})")
        worst = max(worst, error)
        values += sum(int(np.count_nonzero(~np.isnan(g))) for g in numeric.values())
    return worst, values


def _require_float64(subject: CellSubject) -> None:
    if "float64" not in subject.dtypes:
        raise Skipped("finite differences need float64, which is not among the dtypes checked "
                      f"({', '.join(subject.dtypes)})")


def check_gradients(subject: CellSubject) -> str:
    _require_float64(subject)
    cases = list(subject.cases(dtypes=["float64"]))
    worst, values = _gradients(subject, cases)
    return (f"max relative error {worst:.1e} over {values} derivatives "
            f"(every parameter, input and initial state) in {len(cases)} cases")


def _step_error(case: CellCase) -> tuple[float, str]:
    cell = case.cell
    whole = case.forward()
    params, state = case.backend_params(), case.backend_state()
    outputs = []
    for x_t in case.x:
        output, state = cell.step(params, cell.to_backend(x_t), state)
        outputs.append(cell.to_host(output))
    stepped = {"outputs": np.stack(outputs)}
    stepped.update({f"final_state[{i}]": cell.to_host(s) for i, s in enumerate(state)})
    expected = {"outputs": cell.to_host(whole.outputs)}
    expected.update({f"final_state[{i}]": cell.to_host(s)
                     for i, s in enumerate(whole.final_state)})
    try:
        return worst_scaled_error(stepped, expected)
    except ValueError as exc:
        raise Failed(f"{case.label}: step against forward: {exc}") from exc


def _steps(cases: Sequence[CellCase]) -> float:
    worst = 0.0
    for case in cases:
        error, where = _step_error(case)
        tolerance = SAME_CELL_TOLERANCE[case.cell.config.dtype]
        if not error <= tolerance:
            raise Failed(f"{case.label}: step after step differs from forward in {where} by "
                         f"{error:.3g} of its scale (tolerance {tolerance:g})")
        worst = max(worst, error)
    return worst


def check_step_matches_forward(subject: CellSubject) -> str:
    cases = list(subject.cases())
    worst = _steps(cases)
    return f"max error {worst:.1e} of scale over {len(cases)} cases"


def _infer_error(case: CellCase) -> tuple[float, str]:
    """``infer`` on the whole sequence, and on two time chunks with the state carried between
    them, against ``forward``."""
    cell = case.cell
    whole = case.forward()
    params, state = case.backend_params(), case.backend_state()
    x = cell.to_backend(case.x)
    outputs, final = cell.infer(params, x, state)
    split = max(1, case.x.shape[0] // 2)
    first, middle = cell.infer(params, cell.to_backend(case.x[:split]), state)
    pieces = [cell.to_host(first)]
    chunked_final = middle
    if split < case.x.shape[0]:
        second, chunked_final = cell.infer(params, cell.to_backend(case.x[split:]), middle)
        pieces.append(cell.to_host(second))
    found = {"outputs": cell.to_host(outputs), "chunked outputs": np.concatenate(pieces)}
    found.update({f"final_state[{i}]": cell.to_host(s) for i, s in enumerate(final)})
    found.update({f"chunked final_state[{i}]": cell.to_host(s)
                  for i, s in enumerate(chunked_final)})
    host_outputs = cell.to_host(whole.outputs)
    expected = {"outputs": host_outputs, "chunked outputs": host_outputs}
    for i, s in enumerate(whole.final_state):
        expected[f"final_state[{i}]"] = expected[f"chunked final_state[{i}]"] = cell.to_host(s)
    try:
        return worst_scaled_error(found, expected)
    except ValueError as exc:
        raise Failed(f"{case.label}: infer against forward: {exc}") from exc


def check_infer_matches_forward(subject: CellSubject) -> str:
    cases = list(subject.cases())
    if not has_infer(cases[0].cell):
        return "no infer (optional): evaluation runs forward on time chunks instead"
    worst = 0.0
    for case in cases:
        error, where = _infer_error(case)
        tolerance = SAME_CELL_TOLERANCE[case.cell.config.dtype]
        if not error <= tolerance:
            raise Failed(f"{case.label}: infer differs from forward in {where} by "
                         f"{error:.3g} of its scale (tolerance {tolerance:g})")
        worst = max(worst, error)
    return f"max error {worst:.1e} of scale over {len(cases)} cases (whole and in 2 chunks)"


def check_arguments_unchanged(subject: CellSubject) -> str:
    count = 0
    for case in subject.cases():
        cell = case.cell
        params, x, state = case.backend_params(), cell.to_backend(case.x), case.backend_state()
        d_outputs, d_final = cell.to_backend(case.w_out), case.backend_state(case.w_state)
        arguments = {f"params[{n!r}]": v for n, v in params.items()}
        arguments.update({"x": x, "d_outputs": d_outputs})
        arguments.update({f"initial_state[{i}]": s for i, s in enumerate(state)})
        arguments.update({f"d_final_state[{i}]": d for i, d in enumerate(d_final)})
        before = {name: np.array(cell.to_host(a), copy=True) for name, a in arguments.items()}

        def unchanged(call: str, before=before, arguments=arguments, cell=cell,
                      case=case) -> None:
            for name, array in arguments.items():
                if not np.array_equal(cell.to_host(array), before[name], equal_nan=True):
                    raise Failed(f"{case.label}: {call} modified its argument {name}")

        result = cell.forward(params, x, state)
        unchanged("forward")
        first = cell.backward(params, result.cache, d_outputs, d_final)
        unchanged("backward")
        second = cell.backward(params, result.cache, d_outputs, d_final)
        unchanged("a second backward")
        _same_gradients(case, first, second)
        cell.step(params, cell.to_backend(case.x[0]), state)
        unchanged("step")
        count += 1
    return (f"forward, backward (twice, same gradients) and step in {count} cases left "
            "params, x, state, d_outputs and d_final_state as they were")


def _same_gradients(case: CellCase, first: Any, second: Any) -> None:
    one, two = case._gradients(first), case._gradients(second)
    for name, value in one.items():
        if not np.array_equal(value, two[name], equal_nan=True):
            raise Failed(
                f"{case.label}: a second backward from the same cache gave another gradient "
                f"for {name} (backward changed the cache, or is not deterministic; runs must "
                "be reproducible bit for bit)")


def check_no_aliasing(subject: CellSubject) -> str:
    count = 0
    for case in subject.cases():
        cell = case.cell
        params, x, state = case.backend_params(), cell.to_backend(case.x), case.backend_state()
        d_outputs, d_final = cell.to_backend(case.w_out), case.backend_state(case.w_state)
        arguments = {f"params[{n!r}]": v for n, v in params.items()}
        arguments.update({"x": x, "d_outputs": d_outputs})
        arguments.update({f"initial_state[{i}]": s for i, s in enumerate(state)})
        arguments.update({f"d_final_state[{i}]": d for i, d in enumerate(d_final)})
        result = cell.forward(params, x, state)
        back = cell.backward(params, result.cache, d_outputs, d_final)
        output, new_state = cell.step(params, cell.to_backend(case.x[0]), state)
        produced = {"forward's outputs": result.outputs, "step's output": output}
        produced.update({f"forward's final_state[{i}]": s
                         for i, s in enumerate(result.final_state)})
        produced.update({f"step's new state[{i}]": s for i, s in enumerate(new_state)})
        gradients = {f"gradient {n!r}": g for n, g in back.param_grads.items()}
        gradients["d_inputs"] = back.d_inputs
        gradients.update({f"d_initial_state[{i}]": d
                          for i, d in enumerate(back.d_initial_state)})
        for name, array in {**produced, **gradients}.items():
            for argument, value in arguments.items():
                if _shares_memory(array, value):
                    raise Failed(f"{case.label}: {name} shares memory with the argument "
                                 f"{argument}")
        names = list(gradients)
        for i, name in enumerate(names):
            for other in names[i + 1:]:
                if _shares_memory(gradients[name], gradients[other]):
                    raise Failed(f"{case.label}: {name} and {other} share memory (the "
                                 "optimizer and clipping update gradients in place)")
        count += 1
    return f"results and gradients of {count} cases are separate arrays"


def check_zero_final_state_gradient(subject: CellSubject) -> str:
    count = 0
    for case in subject.cases():
        cell = case.cell
        params, d_outputs = case.backend_params(), cell.to_backend(case.w_out)
        zeros = case.backend_state([np.zeros_like(s) for s in case.state])
        implicit = cell.backward(params, case.forward().cache, d_outputs)
        explicit = cell.backward(params, case.forward().cache, d_outputs, zeros)
        one, two = case._gradients(implicit), case._gradients(explicit)
        for name, value in one.items():
            if not np.array_equal(value, two[name], equal_nan=True):
                error = scaled_error(value, two[name])
                raise Failed(f"{case.label}: gradient {name} with d_final_state=None differs "
                             f"from d_final_state=zeros by {error:.3g} of its scale")
        count += 1
    return f"identical gradients in {count} cases"


def check_edge_shapes(subject: CellSubject) -> str:
    cases = list(subject.cases(shapes=[EDGE_SHAPE]))
    for case in cases:
        _contract(case, subject.label)
    step = _steps(cases)
    detail = f"T=B=I=H=1 in {len(cases)} cases: shapes, step (error {step:.1e})"
    if "float64" in subject.dtypes:
        worst, _ = _gradients(subject, [c for c in cases if c.cell.config.dtype == "float64"])
        detail += f", gradients (relative error {worst:.1e})"
    return detail


def check_float32_matches_float64(subject: CellSubject) -> str:
    if not {"float32", "float64"} <= set(subject.dtypes):
        raise Skipped(f"needs both float32 and float64 (checking {', '.join(subject.dtypes)})")
    worst, count = 0.0, 0
    for case64 in subject.cases(dtypes=["float64"]):
        config = case64.cell.config
        cell32 = subject.cell(dataclasses.replace(config, dtype="float32"))
        case32 = case64.with_cell(cell32)
        single, double = case32.results(), case64.results()
        for name, expected in double.items():
            error = scaled_error(single[name], expected)
            if not error < TOLERANCE["float32"]:
                raise Failed(f"{case64.label}: {name} in float32 differs from float64 by "
                             f"{error:.3g} of its scale (tolerance {TOLERANCE['float32']:g})")
            worst = max(worst, error)
        count += 1
    return f"max error {worst:.1e} of scale over {count} cases"


def _reference_cases(subject: CellSubject) -> Iterator[tuple[CellCase, Cell]]:
    """The subject's cases the reference supports, each with the reference's cell."""
    reference = subject.require_reference()
    supports = subject.reference_supports
    found = False
    for case in subject.cases():
        config = case.cell.config
        if supports.problems(config):
            continue
        found = True
        yield case, subject.cell(config, reference)
    if not found:
        raise Skipped(f"the reference {subject.reference_label} supports none of the cases")


def check_same_init_as_reference(subject: CellSubject) -> str:
    count = 0
    for case, reference in _reference_cases(subject):
        ours = case.cell.init_params(np.random.default_rng(subject.seed))
        theirs = reference.init_params(np.random.default_rng(subject.seed))
        if list(ours) != list(theirs):
            raise Failed(f"{case.label}: parameter names {list(ours)} here, {list(theirs)} in "
                         f"the reference {subject.reference_label}")
        for name, value in theirs.items():
            if not np.array_equal(ours[name], value):
                raise Failed(f"{case.label}: init_params()[{name!r}] differs from the reference "
                             f"{subject.reference_label}'s for the same seed (the same "
                             "generator state must give the same parameters on every backend)")
        count += 1
    return f"identical parameters in {count} cases (reference {subject.reference_label})"


def check_matches_reference(subject: CellSubject) -> str:
    worst, count = 0.0, 0
    for case, reference in _reference_cases(subject):
        dtype = case.cell.config.dtype
        try:
            expected = case.with_cell(reference).results()
        except Exception as exc:
            raise Failed(f"{case.label}: the reference {subject.reference_label} raised "
                         f"{type(exc).__name__}: {exc} on this case") from exc
        try:
            error, where = worst_scaled_error(case.results(), expected)
        except ValueError as exc:
            raise Failed(f"{case.label}: {exc}") from exc
        if not error <= TOLERANCE[dtype]:
            raise Failed(f"{case.label}: {where} differs from the reference "
                         f"{subject.reference_label} by {error:.3g} of its scale (tolerance "
                         f"{TOLERANCE[dtype]:g})")
        worst = max(worst, error)
        count += 1
    return (f"max error {worst:.1e} of scale over {count} cases "
            f"(reference {subject.reference_label})")


#: Every cell check, in the order they run.
CELL_CHECKS: tuple[Check[CellSubject], ...] = (
    Check("protocol", check_protocol,
          "every Cell member; config, state_size, initial_state, to_backend/to_host, "
          "init_params"),
    Check("shapes_and_dtypes", check_shapes_and_dtypes,
          "forward, backward and step results: shapes, dtypes, state arity, gradient keys"),
    Check("gradients", check_gradients,
          "backward against finite differences (float64), every parameter, input and state"),
    Check("step_matches_forward", check_step_matches_forward,
          "step after step gives forward's outputs and final state"),
    Check("infer_matches_forward", check_infer_matches_forward,
          "infer (optional), whole and in two time chunks, gives forward's outputs and state"),
    Check("arguments_unchanged", check_arguments_unchanged,
          "forward, backward and step leave their arguments alone"),
    Check("no_aliasing", check_no_aliasing,
          "results and gradients share no memory with arguments or each other"),
    Check("zero_final_state_gradient", check_zero_final_state_gradient,
          "backward with d_final_state=None equals d_final_state=zeros"),
    Check("edge_shapes", check_edge_shapes, "T = B = I = H = 1"),
    Check("float32_matches_float64", check_float32_matches_float64,
          "the same numbers in float32 and float64 agree within float32's tolerance"),
    Check("same_init_as_reference", check_same_init_as_reference,
          "the same seed gives the same parameters as the reference backend"),
    Check("matches_reference", check_matches_reference,
          "outputs, final state and gradients agree with the reference backend"),
)
CELL_CHECK_NAMES = tuple(check.name for check in CELL_CHECKS)


# --- building a subject -------------------------------------------------------------------------


def _shares_memory(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return bool(np.shares_memory(a, b))
    span_a, span_b = _memory_span(a), _memory_span(b)
    if span_a is None or span_b is None or span_a[0] != span_b[0]:
        return False
    return span_a[1] < span_b[2] and span_b[1] < span_a[2]


def _memory_span(array: Any) -> tuple[str, int, int] | None:
    """(address space, first byte, one past the last byte) of an array exposing the CUDA or
    numpy array interface, or a tensor's ``data_ptr`` (PyTorch's CPU tensors have neither
    interface); ``None`` when it exposes none of them (then aliasing cannot be checked)."""
    if not hasattr(array, "__array_interface__") and callable(getattr(array, "data_ptr", None)):
        try:
            start, itemsize = int(array.data_ptr()), int(array.element_size())
            shape, strides = tuple(array.shape), tuple(array.stride())
            space = "host" if str(array.device) == "cpu" else "cuda"  # as numpy's, numba's
        except (AttributeError, TypeError, RuntimeError):
            return None
        if 0 in shape:
            return None
        high = start + sum((n - 1) * s * itemsize for n, s in zip(shape, strides, strict=True))
        return space, start, high + itemsize
    for space, attribute in (("cuda", "__cuda_array_interface__"),
                             ("host", "__array_interface__")):
        try:
            interface = getattr(array, attribute)
        except AttributeError:
            continue
        start = int(interface["data"][0])
        itemsize = np.dtype(interface["typestr"]).itemsize
        shape = interface["shape"]
        if 0 in shape:
            return None  # no memory at all
        strides = interface.get("strides") or tuple(
            int(np.prod(shape[i + 1:])) * itemsize for i in range(len(shape)))
        low = start + sum((n - 1) * s for n, s in zip(shape, strides, strict=True) if s < 0)
        high = start + sum((n - 1) * s for n, s in zip(shape, strides, strict=True) if s > 0)
        return space, low, high + itemsize
    return None


def _variants(subject: CellSubject) -> str:
    layers = sorted({n for n, _ in subject.variants})
    bias = sorted({b for _, b in subject.variants}, reverse=True)
    return (f"layers {', '.join(map(str, layers))}; bias "
            f"{', '.join('on' if b else 'off' for b in bias)}; {', '.join(subject.dtypes)}")


def _label(factory: Any) -> str:
    return getattr(factory, "__qualname__", None) or getattr(factory, "__name__", None) or repr(
        factory)


def _choose(
    requested: Sequence[Any] | None, supported: Sequence[Any], what: str, label: str
) -> tuple[Any, ...]:
    if requested is None:
        return tuple(supported)
    unsupported = [value for value in requested if value not in supported]
    if unsupported or not requested:
        raise RnnbenchError(
            f"{label} does not support {what} {', '.join(map(str, unsupported)) or '(none)'} "
            f"(supported: {', '.join(map(str, supported))})")
    return tuple(requested)


def cell_subject(
    cell: CellFactory | RegisteredCell,
    *,
    reference: CellFactory | RegisteredCell | str | None = "auto",
    dtypes: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    bias: Sequence[bool] | None = None,
    shapes: Sequence[Shape] = DEFAULT_SHAPES,
    seed: int = 0,
    fd_elements: int | None = None,
    supports: CellSupport | None = None,
    host: PluginHost | None = None,
    plugins: Sequence[str] = (),
    options: Mapping[str, Any] | None = None,
) -> CellSubject:
    """The :class:`CellSubject` that :func:`check_cell` and :func:`cell_checks` check (see
    :func:`check_cell` for the arguments)."""
    reference_supports, no_reference = CellSupport(), "no reference implementation was given"
    given = dict(options or {})
    chosen_options = reference_options = CellConfig(1, 1, options=given).options
    if isinstance(cell, tuple):
        host = load_host(host, plugins)
        name, backend = cell
        entry = find_cell(host, name, backend)
        reason = entry.unavailable_reason()
        if reason is not None:
            raise RnnbenchError(f"cell {name!r} on backend {backend!r} cannot run here: {reason}")
        chosen_options = _resolve(entry, given)
        shown = "".join(f"[{k}={v}]" for k, v in given.items())
        label, factory = f"{name}{shown}/{backend}", entry.factory
        supports = supports or entry.supports
        if reference == "auto":
            found = default_reference(host, name, backend)
            reference = None if found is None else (name, found.backend)
            no_reference = f"no other available backend of cell {name!r} is registered"
        elif isinstance(reference, str):
            if reference == backend:
                raise RnnbenchError(f"the reference backend must differ from {backend!r}")
            reference = (name, reference)
    else:
        label, factory = _label(cell), cell
        supports = supports or CellSupport()
        if reference == "auto":
            reference, no_reference = None, "no reference given (reference=FACTORY)"
        elif isinstance(reference, str):
            raise RnnbenchError(
                f"reference={reference!r} names a backend, which needs a registered cell: pass "
                "the cell as (name, backend), or the reference as a factory")
    if reference is None:
        reference_factory, reference_label = None, ""
    elif isinstance(reference, tuple):
        host = load_host(host, plugins if not isinstance(cell, tuple) else ())
        entry = find_cell(host, *reference)
        reason = entry.unavailable_reason()
        if reason is not None:
            raise RnnbenchError(f"the reference {reference[0]}/{reference[1]} cannot run here: "
                                f"{reason}")
        reference_factory, reference_label = entry.factory, f"{reference[0]}/{reference[1]}"
        reference_supports = entry.supports
        reference_options = _resolve(entry, given)
    else:
        reference_factory, reference_label = reference, _label(reference)
    if dtypes is not None:
        unknown = [d for d in dtypes if d not in DTYPES]
        if unknown:
            raise RnnbenchError(f"unknown dtype {unknown[0]!r}; use one of {', '.join(DTYPES)}")
    max_layers = supports.max_layers
    if layers is None:
        layers = [n for n in DEFAULT_LAYERS if max_layers is None or n <= max_layers]
    elif not layers or any(n < 1 or (max_layers is not None and n > max_layers) for n in layers):
        raise RnnbenchError(f"{label} supports 1 to {max_layers or 'any number of'} layers; "
                            f"asked for {list(layers)}")
    chosen_bias = _choose(bias, supports.bias, "bias", label)
    return CellSubject(
        label=label,
        factory=factory,
        dtypes=_choose(dtypes, supports.dtypes, "dtype", label),
        variants=tuple((n, b) for n in layers for b in chosen_bias),
        shapes=tuple(shapes),
        seed=seed,
        fd_elements=fd_elements,
        reference=reference_factory,
        reference_label=reference_label,
        reference_supports=reference_supports,
        no_reference=no_reference,
        options=chosen_options,
        reference_options=reference_options,
    )


def _resolve(entry: Any, given: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """``given`` options completed with a registered cell's defaults, or a clear error."""
    try:
        return entry.resolve_options(given)
    except ValueError as exc:
        raise RnnbenchError(str(exc)) from None


def check_cell(
    cell: CellFactory | RegisteredCell,
    *,
    reference: CellFactory | RegisteredCell | str | None = "auto",
    checks: Sequence[str] | None = None,
    dtypes: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    bias: Sequence[bool] | None = None,
    shapes: Sequence[Shape] = DEFAULT_SHAPES,
    seed: int = 0,
    fd_elements: int | None = None,
    supports: CellSupport | None = None,
    host: PluginHost | None = None,
    plugins: Sequence[str] = (),
    options: Mapping[str, Any] | None = None,
) -> CheckReport:
    """Run the cell checks (all, or those named in ``checks``; see :data:`CELL_CHECKS`) on a
    cell and return their report; ``report.raise_on_failure()`` turns failures into an
    ``AssertionError`` for a test.

    ``cell`` is a factory (``factory(rnnbench.CellConfig) -> Cell``, e.g. the cell's class) or
    a registered ``(name, backend)``, built through the plugin manager (the installed plugins,
    plus ``plugins``, or ``host``); a registered cell's declared support (``CellSupport``)
    bounds what is tried. ``reference`` is what ``same_init_as_reference`` and
    ``matches_reference`` compare with: a factory, a registered ``(name, backend)``, a backend
    name of the same registered cell, ``None`` for none, or ``"auto"``: for a registered cell,
    another available backend of the same name (numpy first), else none.

    Cases: every ``shape`` ``(T, B, I, H)`` (small by default, so the checks take seconds),
    every supported dtype in ``dtypes``, layer count in ``layers`` (default 1 and 2) and bias
    setting in ``bias``, with parameters from the cell's ``init_params`` and inputs drawn from
    ``seed``. ``fd_elements`` limits finite differences to that many elements per array.
    ``options`` (e.g. ``{"nonlinearity": "relu"}``) are the cell's options for every case (and
    the reference's); a registered cell's undeclared option is an error.
    """
    subject = cell_subject(
        cell, reference=reference, dtypes=dtypes, layers=layers, bias=bias, shapes=shapes,
        seed=seed, fd_elements=fd_elements, supports=supports, host=host, plugins=plugins,
        options=options,
    )
    return run_checks(subject.label, select_checks(CELL_CHECKS, checks, "cell"), subject)


def cell_checks(
    cell: CellFactory | RegisteredCell,
    *,
    reference: CellFactory | RegisteredCell | str | None = "auto",
    checks: Sequence[str] | None = None,
    dtypes: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    bias: Sequence[bool] | None = None,
    shapes: Sequence[Shape] = DEFAULT_SHAPES,
    seed: int = 0,
    fd_elements: int | None = None,
    supports: CellSupport | None = None,
    host: PluginHost | None = None,
    plugins: Sequence[str] = (),
    options: Mapping[str, Any] | None = None,
) -> list[NamedCheck]:
    """The checks :func:`check_cell` runs, one callable each, for ``pytest.mark.parametrize``::

        @pytest.mark.parametrize("check", cell_checks(("mycell", "numpy")))
        def test_mycell(check):
            check()

    Each is named ``"SUBJECT::CHECK"`` (the test id); calling it raises ``CheckFailed`` (an
    ``AssertionError``) when the check fails and skips the test when it does not apply. The
    cell is built when the check runs, not when the list is made.
    """
    subject = cell_subject(
        cell, reference=reference, dtypes=dtypes, layers=layers, bias=bias, shapes=shapes,
        seed=seed, fd_elements=fd_elements, supports=supports, host=host, plugins=plugins,
        options=options,
    )
    return [NamedCheck(subject.label, check, subject)
            for check in select_checks(CELL_CHECKS, checks, "cell")]
