"""Initial recurrent weights: the schemes that decide whether gradients vanish or explode.

The cell's own ``init_params`` gives PyTorch's uniform initialisation; a run may then replace
each gate's recurrent matrix (the ``H x H`` blocks of ``weight_hh_l{k}``):

- ``orthogonal``: a random orthogonal matrix per gate (Saxe et al. 2014), spectral radius 1;
- ``identity``: the identity per gate and zero biases, as in Le et al. 2015's IRNN;

and finally rescale every block to a chosen ``spectral_radius`` (largest |eigenvalue|), to
provoke exploding (> 1) or vanishing (< 1) gradients on purpose.
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
) -> None:
    """Apply ``scheme`` and ``radius`` to the recurrent weights in ``params``, in place.

    ``"pytorch"`` with no radius leaves ``params`` untouched (and draws nothing from ``rng``),
    so runs with the default initialisation keep their numbers.
    """
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; use one of {', '.join(INITS)}")
    if scheme == "pytorch" and radius is None:
        return
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
