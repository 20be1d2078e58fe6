"""Numba kernels of the ``numba-cpu`` backend: one layer, one whole sequence per call.

Two families, same equations, tested against the numpy reference on both:

Serial kernels (``rnn_forward``, ``lstm_backward``, ...; the default path)
- the input projection of all T steps is one GEMM (``x2 @ W_ih.T`` over ``T*B`` rows);
- per time step, one GEMM for the recurrent product (``h @ W_hh.T``) and one fused pass over
  the gates (bias, nonlinearities, state update) that writes the activations backward needs;
- backward walks the steps in reverse with one GEMM per step (``d_pre @ W_hh``) and stores the
  pre-activation gradients of every step, so the weight gradients are each *one* GEMM over all
  ``T*B`` rows afterwards (:func:`_weight_grads`), and the bias gradients one GEMV;
- nothing is allocated inside the time loop; the fused gate passes vectorise (float32 uses a
  rational tanh, and division by zero follows numpy, so LLVM can emit SIMD code);
- the recurrent weights are transposed once per call (:func:`transposed`, tile by tile: numpy's
  strided copy took 27 ms at H=1024, 13 ms tiled, of which ~7 ms is faulting in the fresh
  16 MB), so every per-step product reads a row-major matrix (measured 1.5-2x faster than
  BLAS's transposed path at batch 16-64). At batch 1 a BLAS call costs about 0.65 us, as much
  as hand-written loops took, so BLAS stays (the packed serial driver confirmed it: a 64x256
  product takes 0.6 us by hand, L2-bandwidth bound);
- both cores are used by the BLAS calls (threaded BLAS inside each per-step GEMM); the gate
  pass runs on one thread between them.

Tiled kernels (``*_forward_tiled``, ``*_backward_tiled``; opt-in, see
``numba_cpu.TILED_MIN_HIDDEN``)
- W_hh is packed once per call into one gate-interleaved panel per thread
  (:func:`pack_panels`); each time step is one Numba parallel region (``prange`` over the
  panels) in which thread k multiplies the previous state by its panel (a single-threaded BLAS
  call: the caller caps BLAS to one thread, so Numba's and BLAS's threads never compete) and
  at once applies the gate update of its hidden units, while the tile is in cache;
- backward: thread k computes the gate gradients of its units (they need its units of dh
  only), then their product with its rows of W_hh, a partial dh over all units; the next step
  sums the partials of its own units (double-buffered, no barrier besides the region's end).
  The big all-steps GEMMs (input projection, weight gradients) stay threaded BLAS outside;
- measured (2026-11-30, 2-core AMD EPYC shared with four other jobs, float32, 2 threads,
  train step, medians, serial / tiled / torch interleaved in one process, load ~0.4-2):
  slower than the serial kernels at every point of the issue's grid and at (50,4,64,1280):
  LSTM (100,64,256,512) 316 vs 428 ms, (50,16,64,1024) 190 vs 249 ms, (100,64,32,128) 24 vs
  64 ms, (1000,1,16,64) 1.9 vs 82 ms; RNN 2.2-50x slower, GRU 1.3-29x slower (e.g. GRU
  (50,4,64,1280) 141 vs 191 ms). Why: a parallel region per step costs 20-90 us here (an LSTM
  forward at B=1, H=512 took 52-120 us a step tiled, 32-38 us serial), whichever layer
  (OpenMP, workqueue, OMP_WAIT_POLICY=PASSIVE); the two threads rarely hold both cores at
  once, so each step's barrier waits for a descheduled thread; and each tile's
  single-threaded BLAS call still packs its panel every step. Under heavy load (load 8-26)
  the OpenMP layer's spin-waiting made a 20-step forward take 1-4 s (workqueue: 4-15 ms).
  Hence off by default. Re-measured 2026-11-30 20:33 on the quiet machine (load ~1) with
  OPENBLAS_CORETYPE=SkylakeX, LSTM train step, serial vs tiled, one process: (50,16,64,1024)
  124 vs 214 ms, (100,64,256,512) 208 vs 329, (100,64,32,128) 23 vs 81: still off.

Packed kernels (``lstm_forward_packed``/``lstm_backward_packed`` and ``*_par``; LSTM only;
chosen by ``numba_cpu.packed_path``: the parallel driver at batch 2, H >= 1536)
- W_hh packed once per call (:func:`pack_forward`: per block of units, gate-interleaved and
  transposed, (H, 4*sb); :func:`pack_backward`: the block's columns, (4H, sb)); per step each
  block computes its units' recurrent product with plain loops (axpy over a contiguous row,
  two batch rows and four k at a time, FMA contraction only) and at once their gate update;
  backward, a block first computes its units of dh from the previous step's complete gate
  gradients, then its units' gate gradients, so a step needs no partial sums. No BLAS inside
  the time loop, so no per-step re-packing of W_hh. Serial driver (one block of all units) or
  parallel (``prange`` over blocks of 32 units, one region per step).
- measured (2026-11-30, AMD Zen 5 / 2 cores, OpenBLAS 0.3.31 with OPENBLAS_CORETYPE=SkylakeX,
  float32, kernels alone, minimum of 5, quiet moments between other jobs): (50,16,64,1024)
  forward 55-60 ms parallel vs 73 ms BLAS (2 threads), backward 61-138 ms vs 62-65 ms; one
  thread of the packed product reaches 35-40 GFMA/s (a (16,1024)x(1024,128) block; 4-row
  blocking and a fastmath dot form measured the same), about a third of a Zen 5 core's FMA
  peak, against ~107 GFMA/s for PyTorch's whole train step on 2 cores. B=1, (1000,1,16,64):
  serial packed forward 1.3-1.5 ms vs 0.9 ms BLAS (a 64x256 product takes 0.6 us, no less than
  the BLAS call; the gate pass of the blocked layout costs more). Under load (a CI run holding
  a core, load 3-40) the packed serial driver beat the BLAS kernels at B<=16 (e.g. (50,4,64,
  1536) train step 440 vs 1930 ms), the parallel one lost like the tiled kernels. Train step,
  quieter, three interleaved rounds, minima: parallel packed vs BLAS kernels (2 threads)
  (50,2,256,2048) 325 vs 494 ms (and 309 vs 592, 522 vs 727 in two earlier runs),
  (50,4,64,1536) 235 vs 254 (253 vs 260), (50,1,64,2048) 291 vs 188 (GEMV packs nothing),
  (50,16,64,1024) 254 vs 137, (100,64,*,128-512) 2-5x slower. Hence the parallel driver
  for B = 2 at H >= 1536 only (B=4 a wash), the serial one off; the tests force each driver.

What was tried and dropped: ``prange`` over the gate passes alone, launched once per step
between threaded BLAS calls: the Numba threads fought the BLAS threads still spinning from the
step's GEMM and made large steps 10-30x slower (the tiled kernels avoid this by capping BLAS).

Every array is C-contiguous and of one dtype (float32 or float64). Gate order and equations
are PyTorch's (see :mod:`rnnbench.plugins.cells.reference`, which these are tested against).
"""

from __future__ import annotations

import math
import types as _pytypes

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

#: ``error_model="numpy"``: a float division by zero gives inf (as in numpy) instead of a Python
#: exception, whose check in every iteration would stop LLVM from vectorising the gate loops.
_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}

# Both dtypes use a tanh made of multiplies, adds and one divide, so the gate loops vectorise
# (libm's tanh is a scalar call, ~10 ns: it made float64 steps slower than numpy's).
# float32: Eigen's generic_fast_tanh_float, a [13/6] rational function on [-c, c], within a few
# ulp. float64: expm1 of -2|x|/128 by its Taylor series to degree 12 (truncation < 1e-16), then
# doubled seven times (expm1(2y) = e (e + 2), exact in form, keeps small values accurate), and
# tanh|x| = -e / (2 + e); measured within 6e-16 of numpy's tanh, absolute.
_TANH_CLAMP = 7.90531110763549805
_TANH_NUMERATOR = (
    -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
    1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03,
)
_TANH_DENOMINATOR = (
    1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03,
)
#: tanh(20) is 1 to float64 precision; 20 * 2 / 128 bounds the series argument by 0.3125.
_TANH64_CLAMP = 20.0
_TANH64_HALVINGS = 7


@njit(inline="always")
def _tanh64(x):
    y = min(abs(x), _TANH64_CLAMP) * (-2.0 / 2.0**_TANH64_HALVINGS)
    series = 1.0 / 479001600.0  # 1/12!
    for factorial in (39916800.0, 3628800.0, 362880.0, 40320.0, 5040.0, 720.0, 120.0, 24.0,
                      6.0, 2.0, 1.0):
        series = series * y + 1.0 / factorial
    em1 = series * y  # expm1(y)
    for _ in range(_TANH64_HALVINGS):
        em1 = em1 * (em1 + 2.0)
    magnitude = -em1 / (2.0 + em1)
    return magnitude if x >= 0 else -magnitude


def tanh(x):
    """``tanh`` in the dtype of ``x`` (compiled code only; see the overload below)."""
    return math.tanh(x)


def like(x, value):
    """``value`` as a constant of the type of ``x``: keeps float32 arithmetic in float32 (a bare
    Python float literal would promote it to float64)."""
    return value


def _is_float32(x) -> bool:
    return isinstance(x, types.Float) and x.bitwidth == 32


@overload(like)
def _like(x, value):
    if _is_float32(x):
        return lambda x, value: np.float32(value)
    return lambda x, value: np.float64(value)


@overload(tanh)
def _tanh(x):
    if not _is_float32(x):
        return lambda x: _tanh64(x)
    clamp = np.float32(_TANH_CLAMP)
    a13, a11, a9, a7, a5, a3, a1 = (np.float32(c) for c in _TANH_NUMERATOR)
    b6, b4, b2, b0 = (np.float32(c) for c in _TANH_DENOMINATOR)

    def fast_tanh(x):
        x = min(max(x, -clamp), clamp)
        x2 = x * x
        p = ((((((a13 * x2 + a11) * x2 + a9) * x2 + a7) * x2 + a5) * x2 + a3) * x2 + a1) * x
        q = ((b6 * x2 + b4) * x2 + b2) * x2 + b0
        return p / q

    return fast_tanh


@njit(inline="always")
def _sigmoid(x):
    # An exact identity: no overflow for large |x|, and vectorises like tanh.
    half = like(x, 0.5)
    return half + half * tanh(half * x)


@njit(**_JIT)
def _weight_grads(d_in, d_hid, x2, h_prev2, w_ih, dx2, dw_ih, dw_hh, db_ih, db_hh):
    """The weight, bias and input gradients of a layer from the per-step gate gradients of all
    steps at once: ``d_in`` multiplies the input side, ``d_hid`` the hidden side."""
    np.dot(d_in.T, x2, dw_ih)
    np.dot(d_hid.T, h_prev2, dw_hh)
    np.dot(d_in, w_ih, dx2)
    ones = np.ones(d_in.shape[0], d_in.dtype)
    np.dot(ones, d_in, db_ih)
    np.dot(ones, d_hid, db_hh)


#: Side of the square tiles of the blocked transposes: a tile's source rows stay in L1.
_TILE = 32


@njit(**_JIT)
def transposed(w):
    """``w.T`` as a new C-contiguous array, copied tile by tile. ``np.ascontiguousarray(w.T)``
    walks the source column by column, a cache miss per element once a column outgrows the
    cache: 27 ms for a (4096, 1024) float32 W_hh, most of an LSTM forward's 50 steps' worth of
    time at H=1024; tiled it is a few ms."""
    rows, cols = w.shape
    out = np.empty((cols, rows), w.dtype)
    for i0 in range(0, rows, _TILE):
        i1 = min(i0 + _TILE, rows)
        for j0 in range(0, cols, _TILE):
            for j in range(j0, min(j0 + _TILE, cols)):
                for i in range(i0, i1):
                    out[j, i] = w[i, j]
    return out


# --- vanilla RNN (tanh or relu) -----------------------------------------------------------------
# ``relu`` selects the nonlinearity once per row, outside the element loops, so each loop stays
# a branch-free one that vectorises.


@njit(inline="always")
def _rnn_row(gi, h_new, bias, size):
    for j in range(size):
        h_new[j] = tanh(gi[j] + h_new[j] + bias[j])


@njit(inline="always")
def _rnn_relu_row(gi, h_new, bias, size):
    zero = like(h_new[0], 0.0)
    for j in range(size):
        h_new[j] = max(gi[j] + h_new[j] + bias[j], zero)


@njit(**_JIT)
def rnn_forward(x2, w_ih, w_hh, bias, h0, gi, h_all, relu):
    """``gi`` (T, B, H) scratch; ``h_all`` (T+1, B, H) gets h0 and every step's state;
    ``relu``: ``max(0, .)`` instead of tanh."""
    steps, batch, hidden = gi.shape
    np.dot(x2, w_ih.T, gi.reshape(steps * batch, hidden))
    w_hh_t = transposed(w_hh)  # once per call: row-major for the per-step products
    h_all[0] = h0
    for t in range(steps):
        h_new = h_all[t + 1]
        np.dot(h_all[t], w_hh_t, h_new)
        gi_t = gi[t]
        for b in range(batch):
            if relu:
                _rnn_relu_row(gi_t[b], h_new[b], bias, hidden)
            else:
                _rnn_row(gi_t[b], h_new[b], bias, hidden)


@njit(inline="always")
def _rnn_row_back(h_new, dh, dy, dp, size):
    one = like(dp[0], 1.0)
    for j in range(size):
        dp[j] = (dh[j] + dy[j]) * (one - h_new[j] * h_new[j])


@njit(inline="always")
def _rnn_relu_row_back(h_new, dh, dy, dp, size):
    # relu's derivative: 1 where the output is positive, 0 elsewhere (0 at 0, as PyTorch).
    zero, one = like(dp[0], 0.0), like(dp[0], 1.0)
    for j in range(size):
        dp[j] = (dh[j] + dy[j]) * (one if h_new[j] > zero else zero)


@njit(**_JIT)
def rnn_backward(x2, w_ih, w_hh, h_all, dy, dh_last, d_pre, dx2, dw_ih, dw_hh, db_ih, db_hh,
                 dh0, relu):
    steps, batch, hidden = d_pre.shape
    dh = dh_last.copy()
    for t in range(steps - 1, -1, -1):
        h_new, dy_t, dp = h_all[t + 1], dy[t], d_pre[t]
        for b in range(batch):
            if relu:
                _rnn_relu_row_back(h_new[b], dh[b], dy_t[b], dp[b], hidden)
            else:
                _rnn_row_back(h_new[b], dh[b], dy_t[b], dp[b], hidden)
        np.dot(dp, w_hh, dh)
    dh0[:] = dh
    d2 = d_pre.reshape(steps * batch, hidden)
    h_prev2 = h_all[:steps].reshape(steps * batch, hidden)
    _weight_grads(d2, d2, x2, h_prev2, w_ih, dx2, dw_ih, dw_hh, db_ih, db_hh)


# --- LSTM (gates i, f, g, o) --------------------------------------------------------------------


@njit(inline="always")
def _lstm_row(g, gh, bias, c, h_new, c_new, size):
    # Short loops over one or two arrays each: LLVM vectorises these, not one long loop body
    # reading and writing seven arrays it cannot prove apart.
    for j in range(4 * size):
        g[j] = g[j] + gh[j] + bias[j]
    for j in range(2 * size):
        g[j] = _sigmoid(g[j])  # input and forget gates
    for j in range(2 * size, 3 * size):
        g[j] = tanh(g[j])  # candidate
    for j in range(3 * size, 4 * size):
        g[j] = _sigmoid(g[j])  # output gate
    for j in range(size):
        c_new[j] = g[size + j] * c[j] + g[j] * g[2 * size + j]
    for j in range(size):
        h_new[j] = g[3 * size + j] * tanh(c_new[j])


@njit(**_JIT)
def lstm_forward(x2, w_ih, w_hh, bias, h0, c0, gates, h_all, c_all):
    """``gates`` (T, B, 4H) gets the activated gates; ``h_all``/``c_all`` (T+1, B, H) the
    states from h0/c0 on."""
    steps, batch, width = gates.shape
    hidden = width // 4
    np.dot(x2, w_ih.T, gates.reshape(steps * batch, width))
    gh = np.empty((batch, width), gates.dtype)
    w_hh_t = transposed(w_hh)
    h_all[0] = h0
    c_all[0] = c0
    for t in range(steps):
        np.dot(h_all[t], w_hh_t, gh)
        g_t, c_t, h_new, c_new = gates[t], c_all[t], h_all[t + 1], c_all[t + 1]
        for b in range(batch):
            _lstm_row(g_t[b], gh[b], bias, c_t[b], h_new[b], c_new[b], hidden)


@njit(inline="always")
def _lstm_row_back(g, c_prev, c, dh, dy, dc, dp, size):
    one = like(dp[0], 1.0)
    for j in range(size):
        dp[3 * size + j] = tanh(c[j])  # parked in the output gate's slot until the next loop
    for j in range(size):
        tanh_c, o = dp[3 * size + j], g[3 * size + j]
        dh_total = dh[j] + dy[j]
        dc[j] = dc[j] + dh_total * o * (one - tanh_c * tanh_c)  # dc is now the step's total
        dp[3 * size + j] = dh_total * tanh_c * o * (one - o)
    for j in range(size):
        i, cand = g[j], g[2 * size + j]
        dp[j] = dc[j] * cand * i * (one - i)
        dp[2 * size + j] = dc[j] * i * (one - cand * cand)
    for j in range(size):
        f = g[size + j]
        dp[size + j] = dc[j] * c_prev[j] * f * (one - f)
        dc[j] = dc[j] * f  # what flows to the previous step's cell state


@njit(**_JIT)
def lstm_backward(x2, w_ih, w_hh, gates, h_all, c_all, dy, dh_last, dc_last, d_pre, dx2, dw_ih,
                  dw_hh, db_ih, db_hh, dh0, dc0):
    steps, batch, width = d_pre.shape
    hidden = width // 4
    dh = dh_last.copy()
    dc = dc_last.copy()
    for t in range(steps - 1, -1, -1):
        g_t, c_prev, c_t, dy_t, dp = gates[t], c_all[t], c_all[t + 1], dy[t], d_pre[t]
        for b in range(batch):
            _lstm_row_back(g_t[b], c_prev[b], c_t[b], dh[b], dy_t[b], dc[b], dp[b], hidden)
        np.dot(dp, w_hh, dh)
    dh0[:] = dh
    dc0[:] = dc
    d2 = d_pre.reshape(steps * batch, width)
    h_prev2 = h_all[:steps].reshape(steps * batch, hidden)
    _weight_grads(d2, d2, x2, h_prev2, w_ih, dx2, dw_ih, dw_hh, db_ih, db_hh)


# --- GRU (gates r, z, n; reset applied to W_hn h + b_hn, as PyTorch and cuDNN) ------------------


@njit(inline="always")
def _gru_row(g, gh, b_ih, b_hh, h, h_new, gh_n, size):
    one = like(g[0], 1.0)
    for j in range(2 * size):
        g[j] = _sigmoid(g[j] + b_ih[j] + gh[j] + b_hh[j])  # reset and update gates
    for j in range(size):
        gh_n[j] = gh[2 * size + j] + b_hh[2 * size + j]
    for j in range(size):
        g[2 * size + j] = tanh(g[2 * size + j] + b_ih[2 * size + j] + g[j] * gh_n[j])
    for j in range(size):
        z = g[size + j]
        h_new[j] = (one - z) * g[2 * size + j] + z * h[j]


@njit(**_JIT)
def gru_forward(x2, w_ih, w_hh, b_ih, b_hh, h0, gates, gh_n, h_all):
    """``gates`` (T, B, 3H) gets r, z, n; ``gh_n`` (T, B, H) keeps ``W_hn h + b_hn`` (the reset
    gate's operand, which backward needs); ``h_all`` (T+1, B, H) the states."""
    steps, batch, width = gates.shape
    hidden = width // 3
    np.dot(x2, w_ih.T, gates.reshape(steps * batch, width))
    gh = np.empty((batch, width), gates.dtype)
    w_hh_t = transposed(w_hh)
    h_all[0] = h0
    for t in range(steps):
        np.dot(h_all[t], w_hh_t, gh)
        g_t, h_t, h_new, ghn_t = gates[t], h_all[t], h_all[t + 1], gh_n[t]
        for b in range(batch):
            _gru_row(g_t[b], gh[b], b_ih, b_hh, h_t[b], h_new[b], ghn_t[b], hidden)


@njit(inline="always")
def _gru_row_back(g, gh_n, h, dh, dy, dpi, dph, size):
    one = like(dpi[0], 1.0)
    for j in range(size):
        z, n = g[size + j], g[2 * size + j]
        dh_total = dh[j] + dy[j]
        dpi[2 * size + j] = dh_total * (one - z) * (one - n * n)
        dpi[size + j] = dh_total * (h[j] - n) * z * (one - z)
        dh[j] = dh_total * z  # the direct path; the caller adds the path through W_hh
    for j in range(size):
        r = g[j]
        dpi[j] = dpi[2 * size + j] * gh_n[j] * r * (one - r)
    for j in range(2 * size):
        dph[j] = dpi[j]
    for j in range(size):
        dph[2 * size + j] = dpi[2 * size + j] * g[j]


@njit(**_JIT)
def gru_backward(x2, w_ih, w_hh, gates, gh_n, h_all, dy, dh_last, d_in, d_hid, dx2, dw_ih, dw_hh,
                 db_ih, db_hh, dh0):
    steps, batch, width = d_in.shape
    hidden = width // 3
    dh = dh_last.copy()
    through_w = np.empty_like(dh)
    for t in range(steps - 1, -1, -1):
        g_t, ghn_t, h_t, dy_t, dpi, dph = gates[t], gh_n[t], h_all[t], dy[t], d_in[t], d_hid[t]
        for b in range(batch):
            _gru_row_back(g_t[b], ghn_t[b], h_t[b], dh[b], dy_t[b], dpi[b], dph[b], hidden)
        np.dot(dph, w_hh, through_w)
        dh += through_w
    dh0[:] = dh
    h_prev2 = h_all[:steps].reshape(steps * batch, hidden)
    _weight_grads(d_in.reshape(steps * batch, width), d_hid.reshape(steps * batch, width), x2,
                  h_prev2, w_ih, dx2, dw_ih, dw_hh, db_ih, db_hh)


# --- tiled, threaded path -------------------------------------------------------------------------
# One Numba parallel region per time step; thread k owns hidden units [k*bs, (k+1)*bs) of every
# gate. W_hh is packed once per call into per-thread panels, gate-interleaved: panel k holds
# the rows of W_hh of its units, gate after gate (``rows[k]``: (G*bs, H), backward's operand)
# and their transpose (``cols[k]``: (H, G*bs), forward's). Forward: thread k multiplies the
# whole previous state by its panel (a single-threaded BLAS call, B x G*bs) and applies the
# gate update of its units at once, while the tile is in cache. Backward: thread k computes the
# gate gradients of its units (they depend on its units only) and multiplies them by its rows of
# W_hh: a partial dh (B x H) over its units; the next step sums the partials of its own units
# (double-buffered, so no thread overwrites a partial another still reads). The caller caps
# BLAS to one thread around these kernels, so Numba's threads and BLAS's never compete.


def pack_panels(w_hh: np.ndarray, gates: int, blocks: int) -> tuple[np.ndarray, int]:
    """``(rows, bs)``: W_hh ``(G*H, H)`` as ``blocks`` gate-interleaved panels ``(G*bs, H)`` of
    ``bs`` units each (``bs`` a multiple of 8 past 8, for SIMD), the last zero-padded. Forward
    multiplies by a panel's transpose (BLAS reads it transposed, no copy)."""
    hidden = w_hh.shape[1]
    bs = -(-hidden // blocks)
    if bs > 8:
        bs = -(-bs // 8) * 8
    blocks = -(-hidden // bs)
    padded = np.zeros((gates, blocks * bs, hidden), w_hh.dtype)
    padded[:, :hidden] = w_hh.reshape(gates, hidden, hidden)
    rows = np.ascontiguousarray(padded.reshape(gates, blocks, bs, hidden).transpose(1, 0, 2, 3))
    return rows.reshape(blocks, gates * bs, hidden), bs


_PJIT = dict(_JIT, parallel=True)


@njit(inline="always")
def _lstm_tile_row(g, gh, bias, c, h_new, c_new, j0, n, bs, hidden):
    # Short loops over contiguous runs (they vectorise, as in _lstm_row): gather the input
    # projection and bias into the tile, activate in place, update the state, scatter back.
    for q in range(4):
        for u in range(n):
            gh[q * bs + u] += g[q * hidden + j0 + u] + bias[q * hidden + j0 + u]
    for u in range(2 * bs):
        gh[u] = _sigmoid(gh[u])
    for u in range(2 * bs, 3 * bs):
        gh[u] = tanh(gh[u])
    for u in range(3 * bs, 4 * bs):
        gh[u] = _sigmoid(gh[u])
    for u in range(n):
        c_new[j0 + u] = gh[bs + u] * c[j0 + u] + gh[u] * gh[2 * bs + u]
    for u in range(n):
        h_new[j0 + u] = gh[3 * bs + u] * tanh(c_new[j0 + u])
    for q in range(4):
        for u in range(n):
            g[q * hidden + j0 + u] = gh[q * bs + u]


@njit(**_PJIT)
def lstm_forward_tiled(rows, bs, bias, h0, c0, gates, h_all, c_all, tiles):
    """``gates`` holds the input projection on entry (T, B, 4H), the activated gates on exit;
    ``tiles`` (blocks, B, 4*bs) scratch."""
    steps, batch, width = gates.shape
    hidden = width // 4
    blocks = rows.shape[0]
    h_all[0] = h0
    c_all[0] = c0
    for t in range(steps):
        h_prev = h_all[t]
        for k in prange(blocks):
            tile = tiles[k]
            np.dot(h_prev, rows[k].T, tile)
            j0 = k * bs
            n = min(bs, hidden - j0)
            for b in range(batch):
                _lstm_tile_row(gates[t, b], tile[b], bias, c_all[t, b], h_all[t + 1, b],
                               c_all[t + 1, b], j0, n, bs, hidden)


@njit(inline="always")
def _lstm_tile_row_back(g, c_prev, c, dh, dy, dc, dp, tile, j0, n, bs, hidden):
    one = like(dp[0], 1.0)
    for u in range(n):
        tile[3 * bs + u] = tanh(c[j0 + u])  # parked in the output gate's slot
    for u in range(n):
        j = j0 + u
        tanh_c, o = tile[3 * bs + u], g[3 * hidden + j]
        dh_total = dh[u] + dy[j]
        dc[j] = dc[j] + dh_total * o * (one - tanh_c * tanh_c)
        tile[3 * bs + u] = dh_total * tanh_c * o * (one - o)
    for u in range(n):
        j = j0 + u
        i, cand = g[j], g[2 * hidden + j]
        tile[u] = dc[j] * cand * i * (one - i)
        tile[2 * bs + u] = dc[j] * i * (one - cand * cand)
    for u in range(n):
        j = j0 + u
        f = g[hidden + j]
        tile[bs + u] = dc[j] * c_prev[j] * f * (one - f)
        dc[j] = dc[j] * f
    for q in range(4):
        for u in range(n):
            dp[q * hidden + j0 + u] = tile[q * bs + u]


@njit(**_PJIT)
def lstm_backward_tiled(rows, bs, gates, c_all, dy, dh_last, dc_last, d_pre, dh0, dc0,
                        tiles, partials, dh_tiles):
    """Recurrent part of LSTM backward: fills ``d_pre`` (T, B, 4H), ``dh0``, ``dc0``.
    ``tiles`` (blocks, B, 4*bs) zeroed scratch; ``partials`` (2, blocks, B, H) and
    ``dh_tiles`` (blocks, bs) scratch."""
    steps, batch, width = d_pre.shape
    hidden = width // 4
    blocks = rows.shape[0]
    partials[:] = 0
    partials[0, 0] = dh_last
    dc = dc_last.copy()
    for s in range(steps):
        t = steps - 1 - s
        src, dst = partials[s % 2], partials[(s + 1) % 2]
        for k in prange(blocks):
            tile, dh = tiles[k], dh_tiles[k]
            j0 = k * bs
            n = min(bs, hidden - j0)
            for b in range(batch):
                for u in range(n):
                    dh[u] = src[0, b, j0 + u]
                for m in range(1, blocks):
                    for u in range(n):
                        dh[u] += src[m, b, j0 + u]
                _lstm_tile_row_back(gates[t, b], c_all[t, b], c_all[t + 1, b], dh, dy[t, b],
                                    dc[b], d_pre[t, b], tile[b], j0, n, bs, hidden)
            np.dot(tile, rows[k], dst[k])
    final = partials[steps % 2]
    dh0[:] = final[0]
    for m in range(1, blocks):
        dh0 += final[m]
    dc0[:] = dc


@njit(inline="always")
def _sum_partials(src, parts, b, j0, n, out):
    """``out[:n]`` = the sum over the first ``parts`` partials of ``dh[b, j0:j0+n]``."""
    for u in range(n):
        out[u] = src[0, b, j0 + u]
    for m in range(1, parts):
        for u in range(n):
            out[u] += src[m, b, j0 + u]


@njit(**_PJIT)
def rnn_forward_tiled(rows, bs, bias, h0, gi, h_all, tiles, relu):
    """``gi`` (T, B, H): the input projection; ``h_all`` (T+1, B, H) gets the states."""
    steps, batch, hidden = gi.shape
    blocks = rows.shape[0]
    zero = like(gi[0, 0, 0], 0.0)
    h_all[0] = h0
    for t in range(steps):
        h_prev = h_all[t]
        for k in prange(blocks):
            tile = tiles[k]
            np.dot(h_prev, rows[k].T, tile)
            j0 = k * bs
            n = min(bs, hidden - j0)
            for b in range(batch):
                g, gh, h_new = gi[t, b], tile[b], h_all[t + 1, b]
                if relu:
                    for u in range(n):
                        h_new[j0 + u] = max(g[j0 + u] + gh[u] + bias[j0 + u], zero)
                else:
                    for u in range(n):
                        h_new[j0 + u] = tanh(g[j0 + u] + gh[u] + bias[j0 + u])


@njit(**_PJIT)
def rnn_backward_tiled(rows, bs, h_all, dy, dh_last, d_pre, dh0, tiles, partials, relu):
    """Recurrent part of RNN backward: fills ``d_pre`` (T, B, H) and ``dh0``; ``tiles``
    (blocks, B, bs) zeroed, ``partials`` (2, blocks, B, H) scratch."""
    steps, batch, hidden = d_pre.shape
    blocks = rows.shape[0]
    zero, one = like(d_pre[0, 0, 0], 0.0), like(d_pre[0, 0, 0], 1.0)
    partials[:] = 0
    partials[0, 0] = dh_last
    for s in range(steps):
        t = steps - 1 - s
        src, dst = partials[s % 2], partials[(s + 1) % 2]
        for k in prange(blocks):
            tile = tiles[k]
            j0 = k * bs
            n = min(bs, hidden - j0)
            for b in range(batch):
                dpt, h_new, dy_b, dp = tile[b], h_all[t + 1, b], dy[t, b], d_pre[t, b]
                _sum_partials(src, blocks, b, j0, n, dpt)
                if relu:
                    for u in range(n):
                        dpt[u] = (dpt[u] + dy_b[j0 + u]) * (one if h_new[j0 + u] > zero else zero)
                else:
                    for u in range(n):
                        hv = h_new[j0 + u]
                        dpt[u] = (dpt[u] + dy_b[j0 + u]) * (one - hv * hv)
                for u in range(n):
                    dp[j0 + u] = dpt[u]
            np.dot(tile, rows[k], dst[k])
    final = partials[steps % 2]
    dh0[:] = final[0]
    for m in range(1, blocks):
        dh0 += final[m]


@njit(**_PJIT)
def gru_forward_tiled(rows, bs, b_ih, b_hh, h0, gates, gh_n, h_all, tiles):
    """``gates`` (T, B, 3H): the input projection on entry, r, z, n on exit; ``gh_n`` and
    ``h_all`` as in :func:`gru_forward`; ``tiles`` (blocks, B, 3*bs) scratch."""
    steps, batch, width = gates.shape
    hidden = width // 3
    blocks = rows.shape[0]
    one = like(gates[0, 0, 0], 1.0)
    h_all[0] = h0
    for t in range(steps):
        h_prev = h_all[t]
        for k in prange(blocks):
            tile = tiles[k]
            np.dot(h_prev, rows[k].T, tile)
            j0 = k * bs
            n = min(bs, hidden - j0)
            for b in range(batch):
                g, gh, h, h_new, ghn = gates[t, b], tile[b], h_prev[b], h_all[t + 1, b], gh_n[t, b]
                for q in range(2):
                    for u in range(n):
                        j = q * hidden + j0 + u
                        gh[q * bs + u] = _sigmoid(g[j] + b_ih[j] + gh[q * bs + u] + b_hh[j])
                for u in range(n):
                    gh[2 * bs + u] += b_hh[2 * hidden + j0 + u]
                    ghn[j0 + u] = gh[2 * bs + u]
                for u in range(n):
                    j = 2 * hidden + j0 + u
                    g[j] = tanh(g[j] + b_ih[j] + gh[u] * gh[2 * bs + u])
                for u in range(n):
                    z = gh[bs + u]
                    h_new[j0 + u] = (one - z) * g[2 * hidden + j0 + u] + z * h[j0 + u]
                for q in range(2):
                    for u in range(n):
                        g[q * hidden + j0 + u] = gh[q * bs + u]


@njit(**_PJIT)
def gru_backward_tiled(rows, bs, gates, gh_n, h_all, dy, dh_last, d_in, d_hid, dh0, tiles,
                       partials, dh_tiles):
    """Recurrent part of GRU backward: fills ``d_in``/``d_hid`` (T, B, 3H) and ``dh0``.
    ``tiles`` (blocks, B, 3*bs) zeroed; ``partials`` (2, blocks+1, B, H): each tile's share of
    ``dh`` through W_hh, and (last) the direct path ``dh * z``; ``dh_tiles`` (blocks, bs)."""
    steps, batch, width = d_in.shape
    hidden = width // 3
    blocks = rows.shape[0]
    one = like(d_in[0, 0, 0], 1.0)
    partials[:] = 0
    partials[0, 0] = dh_last
    for s in range(steps):
        t = steps - 1 - s
        src, dst = partials[s % 2], partials[(s + 1) % 2]
        for k in prange(blocks):
            tile, dh = tiles[k], dh_tiles[k]
            j0 = k * bs
            n = min(bs, hidden - j0)
            for b in range(batch):
                g, ghn, h, dy_b = gates[t, b], gh_n[t, b], h_all[t, b], dy[t, b]
                dpi, dph, dpt, direct = d_in[t, b], d_hid[t, b], tile[b], dst[blocks, b]
                _sum_partials(src, blocks + 1, b, j0, n, dh)
                for u in range(n):
                    j = j0 + u
                    z, nv = g[hidden + j], g[2 * hidden + j]
                    dh_total = dh[u] + dy_b[j]
                    dpt[2 * bs + u] = dh_total * (one - z) * (one - nv * nv)  # d n's pre-act
                    dpt[bs + u] = dh_total * (h[j] - nv) * z * (one - z)
                    direct[j] = dh_total * z
                for u in range(n):
                    j = j0 + u
                    r = g[j]
                    dpt[u] = dpt[2 * bs + u] * ghn[j] * r * (one - r)
                for q in range(3):
                    for u in range(n):
                        dpi[q * hidden + j0 + u] = dpt[q * bs + u]
                for q in range(2):
                    for u in range(n):
                        dph[q * hidden + j0 + u] = dpt[q * bs + u]
                for u in range(n):
                    dpt[2 * bs + u] = dpt[2 * bs + u] * g[j0 + u]
                    dph[2 * hidden + j0 + u] = dpt[2 * bs + u]
            np.dot(tile, rows[k], dst[k])
    final = partials[steps % 2]
    dh0[:] = final[0]
    for m in range(1, blocks + 1):
        dh0 += final[m]


# --- packed path: hand-written products over W_hh packed once per call -------------------------
# No BLAS inside the time loop. W_hh is packed once per call into sub-blocks of ``sb`` hidden
# units, gate-interleaved (:func:`pack_packed`): ``fwd[s]`` (H, G*sb) is the transpose of the
# rows of block s's units, gate after gate, so a block's recurrent product is a sum over k of
# ``h[b, k] * fwd[s, k, :]``, an axpy over a contiguous row of G*sb outputs (vectorises without
# reassociation, so no fastmath), four k at a time to cut the accumulator's loads and stores.
# ``bwd[s]`` (G*H, sb) is W_hh's columns of block s's units, so block s's share of
# ``dh = d_pre @ W_hh`` is the same kind of loop. Each step is one loop over the blocks: block
# s computes its units' product and at once their gate update (forward) or, backward, first its
# units of dh from the previous (later) step's complete gate gradients and then its units' gate
# gradients, so the only barrier is the loop's end. The same bodies run in two drivers: a
# ``prange`` one (one Numba parallel region per step, for large steps) and a plain loop (small
# steps, where a region's 20-90 us would dominate; at B=1 this is a matrix-vector product that
# beats a BLAS call's ~0.65 us overhead).


def pack_forward(w_hh: np.ndarray, gates: int, sb: int) -> np.ndarray:
    """W_hh ``(G*H, H)`` in blocks of ``sb`` units (the last zero-padded), ``(blocks, H,
    G*sb)`` with ``fwd[s, k, q*sb+u] = W_hh[q*H + s*sb+u, k]``."""
    hidden = w_hh.shape[1]
    blocks = -(-hidden // sb)
    fwd = np.zeros((blocks, hidden, gates * sb), w_hh.dtype)
    _pack_forward(w_hh, fwd, sb)
    return fwd


@njit(**_JIT)
def _pack_forward(w_hh, fwd, sb):
    # A blocked transpose (see :func:`transposed`), gate by gate, block by block.
    blocks, hidden, width = fwd.shape
    for s in range(blocks):
        j0 = s * sb
        n = min(sb, hidden - j0)
        for q in range(width // sb):
            for k0 in range(0, hidden, _TILE):
                for k in range(k0, min(k0 + _TILE, hidden)):
                    for u in range(n):
                        fwd[s, k, q * sb + u] = w_hh[q * hidden + j0 + u, k]


def pack_backward(w_hh: np.ndarray, sb: int) -> np.ndarray:
    """W_hh's columns in blocks of ``sb`` units (the last zero-padded): ``(blocks, G*H, sb)``
    with ``bwd[s, r, u] = W_hh[r, s*sb+u]``."""
    rows, hidden = w_hh.shape
    blocks = -(-hidden // sb)
    if blocks == 1 and sb == hidden:
        return w_hh.reshape(1, rows, hidden)
    cols = np.zeros((rows, blocks * sb), w_hh.dtype)
    cols[:, :hidden] = w_hh
    return np.ascontiguousarray(cols.reshape(rows, blocks, sb).transpose(1, 0, 2))


@njit(inline="always")
def _axpy_rows(a, b, w, acc, width):
    """``acc[b, :width] += a[b] @ w[:, :width]``: four rows of ``w`` per pass over the
    accumulator. Indexes the 2-D arrays directly: a row view per ``k`` would cost reference
    counting (atomic) in the innermost loop."""
    depth = a.shape[1]
    k = 0
    while k + 4 <= depth:
        a0, a1, a2, a3 = a[b, k], a[b, k + 1], a[b, k + 2], a[b, k + 3]
        for u in range(width):
            acc[b, u] += a0 * w[k, u] + a1 * w[k + 1, u] + a2 * w[k + 2, u] + a3 * w[k + 3, u]
        k += 4
    while k < depth:
        a0 = a[b, k]
        for u in range(width):
            acc[b, u] += a0 * w[k, u]
        k += 1


@njit(inline="always")
def _axpy_rows2(a, b, w, acc, width):
    """:func:`_axpy_rows` for rows ``b`` and ``b + 1`` at once (each row of ``w`` read once for
    both)."""
    depth = a.shape[1]
    c = b + 1
    k = 0
    while k + 4 <= depth:
        a0, a1, a2, a3 = a[b, k], a[b, k + 1], a[b, k + 2], a[b, k + 3]
        b0, b1, b2, b3 = a[c, k], a[c, k + 1], a[c, k + 2], a[c, k + 3]
        for u in range(width):
            x0, x1, x2, x3 = w[k, u], w[k + 1, u], w[k + 2, u], w[k + 3, u]
            acc[b, u] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3
            acc[c, u] += b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3
        k += 4
    while k < depth:
        a0, b0 = a[b, k], a[c, k]
        for u in range(width):
            acc[b, u] += a0 * w[k, u]
            acc[c, u] += b0 * w[k, u]
        k += 1


@njit(inline="always")
def _product_rows(a, w, acc, width):
    """``acc[b, :width] = a[b] @ w[:, :width]`` for every row b of ``a``, two rows at a time."""
    batch = a.shape[0]
    for b in range(batch):
        for u in range(width):
            acc[b, u] = 0
    for b in range(0, batch - 1, 2):
        _axpy_rows2(a, b, w, acc, width)
    if batch % 2:
        _axpy_rows(a, batch - 1, w, acc, width)


@njit(inline="always")
def _lstm_packed_block(fwd_s, s, sb, h_prev, bias, gates_t, c_t, h_new, c_new, acc, hidden):
    j0 = s * sb
    n = min(sb, hidden - j0)
    _product_rows(h_prev, fwd_s, acc, 4 * sb)
    for b in range(h_prev.shape[0]):
        tile = acc[b]
        _lstm_tile_row(gates_t[b], tile, bias, c_t[b], h_new[b], c_new[b], j0, n, sb, hidden)


def _lstm_forward_packed(fwd, sb, bias, h0, c0, gates, h_all, c_all, acc):
    steps, _, width = gates.shape
    hidden = width // 4
    blocks = fwd.shape[0]
    h_all[0] = h0
    c_all[0] = c0
    for t in range(steps):
        for s in prange(blocks):
            _lstm_packed_block(fwd[s], s, sb, h_all[t], bias, gates[t], c_all[t], h_all[t + 1],
                               c_all[t + 1], acc[s], hidden)


@njit(inline="always")
def _lstm_packed_block_back(bwd_s, s, sb, d_next, first, dh_last, gates_t, c_prev, c_t, dy_t,
                            dc, dp_t, dh, tile, hidden):
    j0 = s * sb
    n = min(sb, hidden - j0)
    if first:
        for b in range(dy_t.shape[0]):
            for u in range(n):
                dh[b, u] = dh_last[b, j0 + u]
    else:
        _product_rows(d_next, bwd_s, dh, n)
    for b in range(dy_t.shape[0]):
        dh_b = dh[b]
        _lstm_tile_row_back(gates_t[b], c_prev[b], c_t[b], dh_b, dy_t[b], dc[b], dp_t[b],
                            tile[b], j0, n, sb, hidden)


def _lstm_backward_packed(bwd, sb, gates, c_all, dy, dh_last, dc_last, d_pre, dh0, dc0, dh,
                          tiles):
    """Recurrent part of LSTM backward: fills ``d_pre`` (T, B, 4H), ``dh0``, ``dc0``;
    ``dh`` (blocks, B, sb) and ``tiles`` (blocks, B, 4*sb) scratch."""
    steps, batch, width = d_pre.shape
    hidden = width // 4
    blocks = bwd.shape[0]
    dc0[:] = dc_last  # the running dc, per unit (each block touches its own units only)
    for i in range(steps):
        t = steps - 1 - i
        d_next = d_pre[min(t + 1, steps - 1)]
        for s in prange(blocks):
            _lstm_packed_block_back(bwd[s], s, sb, d_next, i == 0, dh_last, gates[t], c_all[t],
                                    c_all[t + 1], dy[t], dc0, d_pre[t], dh[s], tiles[s], hidden)
    for s in prange(blocks):
        j0 = s * sb
        n = min(sb, hidden - j0)
        _product_rows(d_pre[0], bwd[s], dh[s], n)
        for b in range(batch):
            for u in range(n):
                dh0[b, j0 + u] = dh[s, b, u]


def _twins(func):
    """``(serial, parallel)`` dispatchers of one driver. The parallel one compiles a copy under
    another qualified name: Numba's on-disk cache is keyed by name and line, not by the
    ``parallel`` flag, so one function compiled both ways would share (and mix up) entries."""
    copy = _pytypes.FunctionType(func.__code__, func.__globals__, func.__name__ + "_par",
                                 func.__defaults__, func.__closure__)
    copy.__qualname__ = func.__qualname__ + "_par"
    return njit(**_CJIT)(func), njit(**dict(_CJIT, parallel=True))(copy)


#: Without ``contract`` LLVM may not fuse a multiply and an add into one FMA (it changes the
#: rounding: one instead of two), and the products ran as separate vector multiplies and adds,
#: half the rate. Contraction only: no reassociation, so results stay as the loops spell them.
_CJIT = dict(_JIT, fastmath={"contract"})


lstm_forward_packed, lstm_forward_packed_par = _twins(_lstm_forward_packed)
lstm_backward_packed, lstm_backward_packed_par = _twins(_lstm_backward_packed)
