"""Initial recurrent weights: the schemes that decide whether gradients vanish or explode.

The cell's own ``init_params`` gives PyTorch's uniform initialisation; a run may then replace
each gate's recurrent matrix (the ``H x H`` blocks of ``weight_hh_l{k}``):

- ``orthogonal``: a random orthogonal matrix per gate (Saxe et al. 2014), spectral radius 1;
- ``identity``: the identity per gate and zero biases, as in Le et al. 2015's IRNN;

and then rescale every block to a chosen ``spectral_radius`` (largest |eigenvalue|), to
provoke exploding (> 1) or vanishing (< 1) gradients on purpose.

Last, ``forget_bias`` is added to the forget gate's block of ``bias_ih_l{k}`` in every layer
(Gers et al. 2000; Jozefowicz et al. 2015 recommend 1), for a cell that declares its forget gate
(``CellSupport(forget_gate=...)``). PyTorch's effective bias of a gate is ``b_ih + b_hh``: the
value added to ``b_ih`` alone shifts that sum by exactly ``forget_bias`` (``b_hh`` keeps its
uniform draw), which is how a PyTorch user sets it too (``bias_ih_l0[H:2H] += 1``).
"""

from __future__ import annotations

import numpy as np

from rnnbench.records import INITS


def gate_blocks(weight_hh: np.ndarray) -> list[np.ndarray]:
    """The per-gate ``H x H`` views of a recurrent weight ``(G*H, H)``."""
    hidden = weight_hh.shape[1]
    return [weight_hh[g * hidden : (g + 1) * hidden] for g in range(weight_hh.shape[0] // hidden)]


def spectral_radius(matrix: np.ndarray) -> float:
    """The largest absolute eigenvalue of a square matrix."""
    return float(np.max(np.abs(np.linalg.eigvals(matrix.astype(np.float64)))))


def initialise(
    params: dict[str, np.ndarray],
    scheme: str,
    radius: float | None,
    rng: np.random.Generator,
    forget_bias: float = 0.0,
    forget_gate: int | None = None,
) -> None:
    """Apply ``scheme`` and ``radius`` to the recurrent weights in ``params``, in place, then
    add ``forget_bias`` to gate block ``forget_gate`` of every layer's ``bias_ih_l{k}``.

    ``"pytorch"`` with no radius and no forget bias leaves ``params`` untouched (and draws
    nothing from ``rng``), so runs with the default initialisation keep their numbers.
    """
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; use one of {', '.join(INITS)}")
    if not (scheme == "pytorch" and radius is None):
        _recurrent(params, scheme, radius, rng)
    if forget_bias != 0:
        add_forget_bias(params, forget_bias, forget_gate)


def add_forget_bias(
    params: dict[str, np.ndarray], forget_bias: float, forget_gate: int | None
) -> None:
    """Add ``forget_bias`` to gate block ``forget_gate`` of each ``bias_ih_l{k}`` (the block's
    size: the layer's hidden size, ``weight_hh_l{k}``'s columns), in place."""
    biases = [name for name in params if name.rpartition("bias_ih_l")[1]]
    if forget_gate is None or not biases:
        why = "declares no forget gate" if forget_gate is None else "has no biases (bias: false)"
        raise ValueError(
            f"forget_bias {forget_bias:g} is added to the forget-gate biases, and this cell "
            f"{why}; use forget_bias: 0 for it"
        )
    for name in biases:
        prefix, _, layer = name.rpartition("bias_ih_l")
        weight_hh = params.get(f"{prefix}weight_hh_l{layer}")
        bias = params[name]
        hidden = weight_hh.shape[1] if weight_hh is not None and weight_hh.ndim == 2 else None
        if hidden is None or bias.shape[0] < (forget_gate + 1) * hidden:
            raise ValueError(
                f"forget_bias needs {name} to stack gate blocks of the hidden size, with the "
                f"forget gate as block {forget_gate}; got shape {bias.shape}"
            )
        bias[forget_gate * hidden : (forget_gate + 1) * hidden] += bias.dtype.type(forget_bias)


def _recurrent(
    params: dict[str, np.ndarray], scheme: str, radius: float | None, rng: np.random.Generator
) -> None:
    recurrent = [name for name in params if name.rpartition("weight_hh_l")[1]]
    asked = f"init {scheme!r}" if radius is None else f"init {scheme!r} with spectral_radius"
    if not recurrent:
        # A cell without PyTorch's recurrent matrices (e.g. minGRU) would silently train from
        # its default initialisation under another run id: refuse instead.
        raise ValueError(
            f"{asked} sets the recurrent matrices weight_hh_l{{k}}, and this cell has none "
            f"(its parameters: {', '.join(params)}); use init: pytorch without spectral_radius"
        )
    for name in recurrent:
        weight = params[name]
        prefix, _, layer = name.rpartition("weight_hh_l")  # "encoder." etc. may lead
        if weight.ndim != 2 or weight.shape[0] % weight.shape[1]:
            raise ValueError(
                f"{asked} needs {name} to be gate matrices of shape (G*H, H), got "
                f"{weight.shape}; use init: pytorch without spectral_radius for this cell"
            )
        for block in gate_blocks(weight):
            if scheme == "orthogonal":
                q, r = np.linalg.qr(rng.standard_normal(block.shape))
                block[...] = q * np.sign(np.diag(r))  # uniform over orthogonal matrices
            elif scheme == "identity":
                block[...] = np.eye(block.shape[0])
            if radius is not None:
                current = spectral_radius(block)
                if current > 0:
                    block *= block.dtype.type(radius / current)
        if scheme == "identity":
            for bias in (f"{prefix}bias_ih_l{layer}", f"{prefix}bias_hh_l{layer}"):
                if bias in params:
                    params[bias][...] = 0
