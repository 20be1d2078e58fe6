"""Numba kernels of the ``numba-cpu`` backend: one layer, one whole sequence per call.

Where the time goes, and what each kernel does about it:

- the input projection of all T steps is one GEMM (``x2 @ W_ih.T`` over ``T*B`` rows);
- per time step, one GEMM for the recurrent product (``h @ W_hh.T``) and one fused pass over
  the gates (bias, nonlinearities, state update) that writes the activations backward needs;
- backward walks the steps in reverse with one GEMM per step (``d_pre @ W_hh``) and stores the
  pre-activation gradients of every step, so the weight gradients are each *one* GEMM over all
  ``T*B`` rows afterwards, and the bias gradients one GEMV;
- nothing is allocated inside the time loop; the fused passes run on both cores (``prange``
  over the batch) once a step has enough work to pay for the thread hand-off;
- the whole time loop is compiled (``njit``, cached on disk per dtype), so a step costs a BLAS
  call and a fused loop, not Python interpretation.

Every array is C-contiguous and of one dtype (float32 or float64). Gate order and equations
are PyTorch's (see :mod:`plugins.cells.reference`, which these are tested against).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

#: Below this many elements per step (batch x hidden), the gate loop runs on one thread: the
#: hand-off to a second thread would cost more than it saves.
PARALLEL_MIN = 16384

_JIT = {"cache": True, "nogil": True}


@njit(inline="always")
def _sigmoid(x):
    # Exact identity, no overflow for large |x|, and no branch to stop vectorisation.
    return 0.5 + 0.5 * math.tanh(0.5 * x)


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


# --- vanilla tanh RNN ---------------------------------------------------------------------------


@njit(inline="always")
def _rnn_row(gi, h_new, bias, size):
    for j in range(size):
        h_new[j] = math.tanh(gi[j] + h_new[j] + bias[j])


@njit(parallel=True, **_JIT)
def rnn_forward(x2, w_ih, w_hh, bias, h0, gi, h_all):
    """``gi`` (T, B, H) scratch; ``h_all`` (T+1, B, H) gets h0 and every step's state."""
    steps, batch, hidden = gi.shape
    np.dot(x2, w_ih.T, gi.reshape(steps * batch, hidden))
    h_all[0] = h0
    for t in range(steps):
        h_new = h_all[t + 1]
        np.dot(h_all[t], w_hh.T, h_new)
        gi_t = gi[t]
        if batch * hidden >= PARALLEL_MIN:
            for b in prange(batch):
                _rnn_row(gi_t[b], h_new[b], bias, hidden)
        else:
            for b in range(batch):
                _rnn_row(gi_t[b], h_new[b], bias, hidden)


@njit(inline="always")
def _rnn_row_back(h_new, dh, dy, dp, size):
    for j in range(size):
        dp[j] = (dh[j] + dy[j]) * (1.0 - h_new[j] * h_new[j])


@njit(parallel=True, **_JIT)
def rnn_backward(x2, w_ih, w_hh, h_all, dy, dh_last, d_pre, dx2, dw_ih, dw_hh, db_ih, db_hh,
                 dh0):
    steps, batch, hidden = d_pre.shape
    dh = dh_last.copy()
    for t in range(steps - 1, -1, -1):
        h_new, dy_t, dp = h_all[t + 1], dy[t], d_pre[t]
        if batch * hidden >= PARALLEL_MIN:
            for b in prange(batch):
                _rnn_row_back(h_new[b], dh[b], dy_t[b], dp[b], hidden)
        else:
            for b in range(batch):
                _rnn_row_back(h_new[b], dh[b], dy_t[b], dp[b], hidden)
        np.dot(dp, w_hh, dh)
    dh0[:] = dh
    d2 = d_pre.reshape(steps * batch, hidden)
    h_prev2 = h_all[:steps].reshape(steps * batch, hidden)
    _weight_grads(d2, d2, x2, h_prev2, w_ih, dx2, dw_ih, dw_hh, db_ih, db_hh)


# --- LSTM (gates i, f, g, o) --------------------------------------------------------------------


@njit(inline="always")
def _lstm_row(g, gh, bias, c, h_new, c_new, size):
    for j in range(size):
        i = _sigmoid(g[j] + gh[j] + bias[j])
        f = _sigmoid(g[size + j] + gh[size + j] + bias[size + j])
        cand = math.tanh(g[2 * size + j] + gh[2 * size + j] + bias[2 * size + j])
        o = _sigmoid(g[3 * size + j] + gh[3 * size + j] + bias[3 * size + j])
        g[j], g[size + j], g[2 * size + j], g[3 * size + j] = i, f, cand, o
        cell = f * c[j] + i * cand
        c_new[j] = cell
        h_new[j] = o * math.tanh(cell)


@njit(parallel=True, **_JIT)
def lstm_forward(x2, w_ih, w_hh, bias, h0, c0, gates, h_all, c_all):
    """``gates`` (T, B, 4H) gets the activated gates; ``h_all``/``c_all`` (T+1, B, H) the
    states from h0/c0 on."""
    steps, batch, width = gates.shape
    hidden = width // 4
    np.dot(x2, w_ih.T, gates.reshape(steps * batch, width))
    gh = np.empty((batch, width), gates.dtype)
    h_all[0] = h0
    c_all[0] = c0
    for t in range(steps):
        np.dot(h_all[t], w_hh.T, gh)
        g_t, c_t, h_new, c_new = gates[t], c_all[t], h_all[t + 1], c_all[t + 1]
        if batch * hidden >= PARALLEL_MIN:
            for b in prange(batch):
                _lstm_row(g_t[b], gh[b], bias, c_t[b], h_new[b], c_new[b], hidden)
        else:
            for b in range(batch):
                _lstm_row(g_t[b], gh[b], bias, c_t[b], h_new[b], c_new[b], hidden)


@njit(inline="always")
def _lstm_row_back(g, c_prev, c, dh, dy, dc, dp, size):
    for j in range(size):
        i, f, cand, o = g[j], g[size + j], g[2 * size + j], g[3 * size + j]
        tanh_c = math.tanh(c[j])
        dh_total = dh[j] + dy[j]
        dc_total = dc[j] + dh_total * o * (1.0 - tanh_c * tanh_c)
        dp[j] = dc_total * cand * i * (1.0 - i)
        dp[size + j] = dc_total * c_prev[j] * f * (1.0 - f)
        dp[2 * size + j] = dc_total * i * (1.0 - cand * cand)
        dp[3 * size + j] = dh_total * tanh_c * o * (1.0 - o)
        dc[j] = dc_total * f


@njit(parallel=True, **_JIT)
def lstm_backward(x2, w_ih, w_hh, gates, h_all, c_all, dy, dh_last, dc_last, d_pre, dx2, dw_ih,
                  dw_hh, db_ih, db_hh, dh0, dc0):
    steps, batch, width = d_pre.shape
    hidden = width // 4
    dh = dh_last.copy()
    dc = dc_last.copy()
    for t in range(steps - 1, -1, -1):
        g_t, c_prev, c_t, dy_t, dp = gates[t], c_all[t], c_all[t + 1], dy[t], d_pre[t]
        if batch * hidden >= PARALLEL_MIN:
            for b in prange(batch):
                _lstm_row_back(g_t[b], c_prev[b], c_t[b], dh[b], dy_t[b], dc[b], dp[b], hidden)
        else:
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
    for j in range(size):
        r = _sigmoid(g[j] + b_ih[j] + gh[j] + b_hh[j])
        z = _sigmoid(g[size + j] + b_ih[size + j] + gh[size + j] + b_hh[size + j])
        hn = gh[2 * size + j] + b_hh[2 * size + j]
        n = math.tanh(g[2 * size + j] + b_ih[2 * size + j] + r * hn)
        g[j], g[size + j], g[2 * size + j] = r, z, n
        gh_n[j] = hn
        h_new[j] = (1.0 - z) * n + z * h[j]


@njit(parallel=True, **_JIT)
def gru_forward(x2, w_ih, w_hh, b_ih, b_hh, h0, gates, gh_n, h_all):
    """``gates`` (T, B, 3H) gets r, z, n; ``gh_n`` (T, B, H) keeps ``W_hn h + b_hn`` (the reset
    gate's operand, which backward needs); ``h_all`` (T+1, B, H) the states."""
    steps, batch, width = gates.shape
    hidden = width // 3
    np.dot(x2, w_ih.T, gates.reshape(steps * batch, width))
    gh = np.empty((batch, width), gates.dtype)
    h_all[0] = h0
    for t in range(steps):
        np.dot(h_all[t], w_hh.T, gh)
        g_t, h_t, h_new, ghn_t = gates[t], h_all[t], h_all[t + 1], gh_n[t]
        if batch * hidden >= PARALLEL_MIN:
            for b in prange(batch):
                _gru_row(g_t[b], gh[b], b_ih, b_hh, h_t[b], h_new[b], ghn_t[b], hidden)
        else:
            for b in range(batch):
                _gru_row(g_t[b], gh[b], b_ih, b_hh, h_t[b], h_new[b], ghn_t[b], hidden)


@njit(inline="always")
def _gru_row_back(g, gh_n, h, dh, dy, dpi, dph, size):
    for j in range(size):
        r, z, n = g[j], g[size + j], g[2 * size + j]
        dh_total = dh[j] + dy[j]
        da_n = dh_total * (1.0 - z) * (1.0 - n * n)
        da_z = dh_total * (h[j] - n) * z * (1.0 - z)
        da_r = da_n * gh_n[j] * r * (1.0 - r)
        dpi[j], dpi[size + j], dpi[2 * size + j] = da_r, da_z, da_n
        dph[j], dph[size + j], dph[2 * size + j] = da_r, da_z, da_n * r
        dh[j] = dh_total * z


@njit(parallel=True, **_JIT)
def gru_backward(x2, w_ih, w_hh, gates, gh_n, h_all, dy, dh_last, d_in, d_hid, dx2, dw_ih, dw_hh,
                 db_ih, db_hh, dh0):
    steps, batch, width = d_in.shape
    hidden = width // 3
    dh = dh_last.copy()
    through_w = np.empty_like(dh)
    for t in range(steps - 1, -1, -1):
        g_t, ghn_t, h_t, dy_t, dpi, dph = gates[t], gh_n[t], h_all[t], dy[t], d_in[t], d_hid[t]
        if batch * hidden >= PARALLEL_MIN:
            for b in prange(batch):
                _gru_row_back(g_t[b], ghn_t[b], h_t[b], dh[b], dy_t[b], dpi[b], dph[b], hidden)
        else:
            for b in range(batch):
                _gru_row_back(g_t[b], ghn_t[b], h_t[b], dh[b], dy_t[b], dpi[b], dph[b], hidden)
        np.dot(dph, w_hh, through_w)
        dh += through_w
    dh0[:] = dh
    h_prev2 = h_all[:steps].reshape(steps * batch, hidden)
    _weight_grads(d_in.reshape(steps * batch, width), d_hid.reshape(steps * batch, width), x2,
                  h_prev2, w_ih, dx2, dw_ih, dw_hh, db_ih, db_hh)
