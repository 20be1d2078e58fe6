"""CUDA kernels of the ``numba-cuda`` backend (``numba.cuda.jit``), one set per dtype and geometry.

Where the work goes, and which kernel does it:

- ``matmul``: one tiled shared-memory GEMM, ``C = op(A) @ op(B) (+ bias)`` with a transpose flag
  per operand. It does every product that spans all time steps at once: the input projection
  ``x2 (T*B, I) @ W_ih^T (+ b_ih)`` before the time loop, and after backward's time loop
  ``dW_ih = D^T x2``, ``dW_hh = D^T H_prev`` and ``dX = D W_ih``. Tiles of both operands are
  staged through shared memory, each loaded along the rows of the array as stored (coalesced,
  transposed or not); every thread accumulates a ``micro x micro`` block of ``C`` in registers;
- ``column_sums``: the bias gradients, ``D`` summed over its ``T*B`` rows;
- one *forward step* kernel per cell, launched once per time step: thread ``(b, j)`` computes
  the recurrent products of hidden unit ``j`` for every gate (``h_{t-1}[b] . W_hh[g*H + j]``:
  the block's rows of ``h_{t-1}`` are staged through shared memory, and ``W_hh`` is transposed
  once per call so that neighbouring threads read neighbouring weights, each weight serving
  ``per_thread`` batch rows), then adds the biases, applies the gate nonlinearities and the
  state update, and writes what backward needs (the activated gates, the states);
- one *backward step* kernel per cell, launched once per time step in reverse: thread ``(b, j)``
  first completes ``dh_t[b, j]``, adding the recurrent product ``d_pre_{t+1}[b] . W_hh[:, j]``
  (finished by the previous launch) to the carried direct paths and ``dy_t``, then computes the
  gate gradients of step ``t`` at unit ``j``. A last launch with ``t = -1`` adds
  ``d_pre_0 W_hh``: the initial state's gradient. The gate gradients of every step are kept, so
  the weight gradients are single GEMMs afterwards;
- small grid-stride helpers: zero fill, 2-D copy, transpose.

Nothing goes back to the host inside the time loop: a layer's forward is one GEMM, a transpose,
``T`` step launches and a few copies; its backward ``T + 1`` step launches, three GEMMs and two
column sums.

Every kernel checks its bounds, so any size works with any :class:`Geometry` (the tests run the
kernels under several, down to one thread per block); every thread of a block reaches every
``syncthreads``. Constants are of the kernel's dtype, so float32 kernels do float32 arithmetic
only. Gate order and equations are PyTorch's, as in :mod:`rnnbench.plugins.cells.reference`.
"""

from __future__ import annotations

import functools
import math
import sys
import threading
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from numba import cuda
from numba.core import config
from numba.np.numpy_support import from_dtype

from rnnbench.plugins.cells import numba_cuda_compat  # noqa: F401  (numpy 2.5: before any kernel compiles)


@dataclass(frozen=True)
class Geometry:
    """Thread-block shapes and tile sizes. The kernels are correct for any positive values."""

    #: GEMM: blocks of ``tile x tile`` threads ...
    tile: int = 16
    #: ... each thread computing ``micro x micro`` elements of ``C`` (a block: a square of
    #: ``tile * micro``), ...
    micro: int = 4
    #: ... with ``depth`` columns of ``op(A)`` (rows of ``op(B)``) staged per shared-memory round.
    depth: int = 16
    #: Step kernels: threads along the hidden units (``threadIdx.x``) ...
    cols: int = 32
    #: ... and along the batch (``threadIdx.y``), ...
    rows: int = 4
    #: ... each thread doing ``per_thread`` batch rows (one weight read serves them all), ...
    per_thread: int = 2
    #: ... with ``chunk`` elements of each row's reduction vector staged per shared-memory round.
    chunk: int = 256
    #: One-dimensional helpers (fills, column sums): threads per block.
    threads: int = 256
    #: Grid-stride kernels (GEMM, copies, fills, column sums): at most this many blocks along
    #: each grid dimension; each block loops over the rest.
    max_blocks: int = 4096


#: For a real GPU.
GPU_GEOMETRY = Geometry()
#: For Numba's CUDA simulator, where every thread is a Python thread and every ``syncthreads`` a
#: round of polling: few threads, few barriers; still several blocks, several shared-memory rounds
#: and partial tiles at the tests' sizes.
SIMULATOR_GEOMETRY = Geometry(
    tile=4, micro=2, depth=16, cols=8, rows=2, per_thread=2, chunk=16, threads=16, max_blocks=4
)


def default_geometry() -> Geometry:
    return SIMULATOR_GEOMETRY if config.ENABLE_CUDASIM else GPU_GEOMETRY


def _make_simulator_shared_arrays_thread_safe() -> None:
    """Work around a race in Numba's CUDA simulator (numba-cuda 0.30): a block's threads run as
    Python threads, and ``cuda.shared.array`` looks up the array of the calling source line,
    creating it when missing, without a lock. Two threads that both miss get two arrays, and a
    kernel that shares data through it computes garbage, rarely and at random (more often the
    more threads a block has). This replaces the lookup with a locked one (same key: the calling
    file and line). Only the simulator is touched; a real GPU has no such code."""
    from numba.cuda.simulator import kernelapi

    shared = getattr(kernelapi, "FakeCUDAShared", None)
    if shared is None or getattr(shared.array, "_rnnbench_locked", False):
        return
    original = shared.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None or not hasattr(self, "_allocations"):
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, kernelapi.types.Type):
            dtype = kernelapi.numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            found = self._allocations.get(caller)
            if found is None:
                found = self._allocations[caller] = np.empty(shape, dtype)
        return found

    array._rnnbench_locked = True
    shared.array = array


if config.ENABLE_CUDASIM:
    _make_simulator_shared_arrays_thread_safe()


@functools.cache
def kernels(dtype_name: str, geometry: Geometry) -> SimpleNamespace:
    """The kernels for one dtype and geometry, compiled lazily at their first launch."""
    np_dtype = np.dtype(dtype_name)
    dt = from_dtype(np_dtype)
    zero, one, half = np_dtype.type(0), np_dtype.type(1), np_dtype.type(0.5)
    # Compile-time constants: shared and local array shapes must be plain names of these.
    tile, micro, depth = geometry.tile, geometry.micro, geometry.depth
    block_m = block_n = tile * micro  # a GEMM block's tile of C
    gemm_threads = tile * tile
    depth_padded = depth + 1  # sa's row length: the padding spreads a column over the banks
    cols, rows = geometry.cols, geometry.rows
    per_thread, chunk = geometry.per_thread, geometry.chunk
    batch_rows = rows * per_thread  # a step block's batch rows
    step_threads = cols * rows

    # --- device functions -----------------------------------------------------------------------

    @cuda.jit(device=True)
    def sigmoid(x):
        # An exact identity that cannot overflow, unlike 1 / (1 + exp(-x)).
        return half + half * math.tanh(half * x)

    @cuda.jit(device=True)
    def recurrent_product(vec, t, w, acc, sh, j, hidden, gates):
        """``acc[i, g] = sum_k vec[t, b_i, k] * w[k, g * hidden + j]`` for the block's batch rows
        ``b_i = blockIdx.y * batch_rows + threadIdx.y + i * rows`` and ``g < gates``.

        ``vec[t]`` (B, K) is staged through ``sh`` (batch_rows, chunk), ``chunk`` at a time, by all
        the block's threads; each weight read serves ``per_thread`` rows. Call with every thread.
        """
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * cols + tx
        b0 = cuda.blockIdx.y * batch_rows
        batch, size = vec.shape[1], vec.shape[2]
        for i in range(per_thread):
            for g in range(gates):
                acc[i, g] = zero
        for k0 in range(0, size, chunk):
            for idx in range(tid, batch_rows * chunk, step_threads):
                rr, kk = idx // chunk, idx % chunk
                b, k = b0 + rr, k0 + kk
                sh[rr, kk] = vec[t, b, k] if b < batch and k < size else zero
            cuda.syncthreads()
            if j < hidden:
                for q in range(min(chunk, size - k0)):
                    for g in range(gates):
                        weight = w[k0 + q, g * hidden + j]
                        for i in range(per_thread):
                            acc[i, g] += sh[ty + i * rows, q] * weight
            cuda.syncthreads()

    # --- helpers (grid-stride loops, no barriers) -----------------------------------------------

    @cuda.jit
    def fill_zero(a):
        """``a[:] = 0`` for a one-dimensional ``a``."""
        start, stride = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, a.shape[0], stride):
            a[i] = zero

    @cuda.jit
    def copy2d(src, dst):
        """``dst[:, :] = src`` (any strides); x along the columns."""
        j0, i0 = cuda.grid(2)
        sj, si = cuda.gridsize(2)
        for i in range(i0, dst.shape[0], si):
            for j in range(j0, dst.shape[1], sj):
                dst[i, j] = src[i, j]

    @cuda.jit
    def transpose(a, out):
        """``out = a.T``; ``a`` ``(M, N)``, ``out`` ``(N, M)``; x along a's columns."""
        j0, i0 = cuda.grid(2)
        sj, si = cuda.gridsize(2)
        for i in range(i0, a.shape[0], si):
            for j in range(j0, a.shape[1], sj):
                out[j, i] = a[i, j]

    @cuda.jit
    def column_sums(d, out):
        """``out[j] = sum_r d[r, j]``: one thread per column, neighbours read neighbours."""
        start, stride = cuda.grid(1), cuda.gridsize(1)
        for j in range(start, out.shape[0], stride):
            acc = zero
            for r in range(d.shape[0]):
                acc += d[r, j]
            out[j] = acc

    # --- GEMM -----------------------------------------------------------------------------------

    @cuda.jit
    def matmul(a, b, c, bias, trans_a, trans_b, add_bias):
        """``c (M, N) = op(a) (M, K) @ op(b) (K, N)``, plus ``bias (N,)`` when ``add_bias``.

        ``op(a)`` is ``a.T`` when ``trans_a`` (then ``a`` is stored ``(K, M)``), likewise ``b``
        (stored ``(N, K)`` when ``trans_b``). Block ``(tile, tile)``; a block computes
        ``(tile * micro)``-square tiles of ``c`` (grid-stride over them), thread ``(x, y)`` the
        elements ``(y + i * tile, x + l * tile)`` of each, so neighbouring threads write
        neighbouring elements. Tiles of ``op(a)`` and ``op(b)`` are staged through shared memory
        ``depth`` deep, each loaded along the rows of the array as stored (coalesced).
        """
        m_size, n_size = c.shape
        k_size = a.shape[0] if trans_a else a.shape[1]
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * tile + tx
        sa = cuda.shared.array((block_m, depth_padded), dt)  # sa[m, k]
        sb = cuda.shared.array((depth, block_n), dt)  # sb[k, n]
        acc = cuda.local.array((micro, micro), dt)
        for m0 in range(cuda.blockIdx.y * block_m, m_size, cuda.gridDim.y * block_m):
            for n0 in range(cuda.blockIdx.x * block_n, n_size, cuda.gridDim.x * block_n):
                for i in range(micro):
                    for jj in range(micro):
                        acc[i, jj] = zero
                for k0 in range(0, k_size, depth):
                    for idx in range(tid, block_m * depth, gemm_threads):
                        if trans_a:  # along a's rows: m varies fastest
                            kk, mm = idx // block_m, idx % block_m
                        else:
                            mm, kk = idx // depth, idx % depth
                        m, k = m0 + mm, k0 + kk
                        if m < m_size and k < k_size:
                            sa[mm, kk] = a[k, m] if trans_a else a[m, k]
                        else:
                            sa[mm, kk] = zero
                    for idx in range(tid, depth * block_n, gemm_threads):
                        if trans_b:  # along b's rows: k varies fastest
                            nn, kk = idx // depth, idx % depth
                        else:
                            kk, nn = idx // block_n, idx % block_n
                        n, k = n0 + nn, k0 + kk
                        if n < n_size and k < k_size:
                            sb[kk, nn] = b[n, k] if trans_b else b[k, n]
                        else:
                            sb[kk, nn] = zero
                    cuda.syncthreads()
                    for q in range(min(depth, k_size - k0)):
                        for i in range(micro):
                            a_value = sa[ty + i * tile, q]
                            for jj in range(micro):
                                acc[i, jj] += a_value * sb[q, tx + jj * tile]
                    cuda.syncthreads()
                for i in range(micro):
                    m = m0 + ty + i * tile
                    for jj in range(micro):
                        n = n0 + tx + jj * tile
                        if m < m_size and n < n_size:
                            c[m, n] = acc[i, jj] + bias[n] if add_bias else acc[i, jj]

    # --- step kernels ---------------------------------------------------------------------------
    # Block (cols, rows): thread (x, y) does hidden unit j = blockIdx.x * cols + x of the batch
    # rows blockIdx.y * batch_rows + y + i * rows, i < per_thread. Grid: the hidden units along x,
    # the batch along y.

    # --- vanilla RNN (tanh, or relu when ``relu`` is true) ---------------------------------------

    @cuda.jit
    def rnn_forward_step(t, pre, w_hh_t, b_hh, h_all, relu):
        """``pre`` (T, B, H): ``x W_ih^T + b_ih``; ``w_hh_t`` (H, H): ``W_hh^T``;
        ``h_all`` (T+1, B, H): reads ``h_all[t]``, writes ``h_all[t + 1]``; ``relu``:
        ``max(0, .)`` instead of tanh."""
        j = cuda.blockIdx.x * cols + cuda.threadIdx.x
        batch, hidden = h_all.shape[1], h_all.shape[2]
        sh = cuda.shared.array((batch_rows, chunk), dt)
        acc = cuda.local.array((per_thread, 1), dt)
        recurrent_product(h_all, t, w_hh_t, acc, sh, j, hidden, 1)
        for i in range(per_thread):
            b = cuda.blockIdx.y * batch_rows + cuda.threadIdx.y + i * rows
            if b < batch and j < hidden:
                a = pre[t, b, j] + acc[i, 0] + b_hh[j]
                # ``a <= 0`` is False for NaN, so NaN stays NaN (as numpy, numba-cpu, PyTorch)
                h_all[t + 1, b, j] = (zero if a <= zero else a) if relu else math.tanh(a)

    @cuda.jit
    def rnn_backward_step(t, h_all, dy, w_hh, d_pre, dh, relu):
        """Gate gradients of step ``t`` into ``d_pre[t]`` (T, B, H); ``dh`` (B, H) carries the
        direct part of dLoss/dh (here only the final state's). ``t = -1``: ``dh += d_pre[0]
        W_hh``, the initial state's gradient."""
        j = cuda.blockIdx.x * cols + cuda.threadIdx.x
        steps, batch, hidden = d_pre.shape
        sh = cuda.shared.array((batch_rows, chunk), dt)
        acc = cuda.local.array((per_thread, 1), dt)
        if t + 1 < steps:  # the same for the whole block: every thread meets the barriers
            recurrent_product(d_pre, t + 1, w_hh, acc, sh, j, hidden, 1)
        else:
            for i in range(per_thread):
                acc[i, 0] = zero
        for i in range(per_thread):
            b = cuda.blockIdx.y * batch_rows + cuda.threadIdx.y + i * rows
            if b < batch and j < hidden:
                if t < 0:
                    dh[b, j] = dh[b, j] + acc[i, 0]
                else:
                    h = h_all[t + 1, b, j]
                    if relu:  # 1 where the output is positive; 0 elsewhere (at 0 too)
                        slope = one if h > zero else zero
                    else:
                        slope = one - h * h
                    d_pre[t, b, j] = (dh[b, j] + acc[i, 0] + dy[t, b, j]) * slope
                    dh[b, j] = zero

    # --- LSTM (gates i, f, g, o) ----------------------------------------------------------------

    @cuda.jit
    def lstm_forward_step(t, gates, w_hh_t, b_hh, h_all, c_all):
        """``gates`` (T, B, 4H): ``x W_ih^T + b_ih`` in, the activated i, f, g, o out;
        ``w_hh_t`` (H, 4H); ``h_all``/``c_all`` (T+1, B, H): step ``t`` -> ``t + 1``."""
        j = cuda.blockIdx.x * cols + cuda.threadIdx.x
        batch, hidden = h_all.shape[1], h_all.shape[2]
        sh = cuda.shared.array((batch_rows, chunk), dt)
        acc = cuda.local.array((per_thread, 4), dt)
        recurrent_product(h_all, t, w_hh_t, acc, sh, j, hidden, 4)
        for i in range(per_thread):
            b = cuda.blockIdx.y * batch_rows + cuda.threadIdx.y + i * rows
            if b < batch and j < hidden:
                i_gate = sigmoid(gates[t, b, j] + acc[i, 0] + b_hh[j])
                f = sigmoid(gates[t, b, hidden + j] + acc[i, 1] + b_hh[hidden + j])
                g = math.tanh(gates[t, b, 2 * hidden + j] + acc[i, 2] + b_hh[2 * hidden + j])
                o = sigmoid(gates[t, b, 3 * hidden + j] + acc[i, 3] + b_hh[3 * hidden + j])
                gates[t, b, j] = i_gate
                gates[t, b, hidden + j] = f
                gates[t, b, 2 * hidden + j] = g
                gates[t, b, 3 * hidden + j] = o
                c = f * c_all[t, b, j] + i_gate * g
                c_all[t + 1, b, j] = c
                h_all[t + 1, b, j] = o * math.tanh(c)

    @cuda.jit
    def lstm_backward_step(t, gates, c_all, dy, w_hh, d_pre, dh, dc):
        """Gate gradients of step ``t`` into ``d_pre[t]`` (T, B, 4H); ``dh``/``dc`` (B, H) carry
        dLoss/dh (direct part) and dLoss/dc. ``t = -1``: ``dh += d_pre[0] W_hh``."""
        j = cuda.blockIdx.x * cols + cuda.threadIdx.x
        steps, batch = d_pre.shape[0], d_pre.shape[1]
        hidden = dh.shape[1]
        sh = cuda.shared.array((batch_rows, chunk), dt)
        acc = cuda.local.array((per_thread, 1), dt)
        if t + 1 < steps:
            recurrent_product(d_pre, t + 1, w_hh, acc, sh, j, hidden, 1)
        else:
            for i in range(per_thread):
                acc[i, 0] = zero
        for i in range(per_thread):
            b = cuda.blockIdx.y * batch_rows + cuda.threadIdx.y + i * rows
            if b < batch and j < hidden:
                if t < 0:
                    dh[b, j] = dh[b, j] + acc[i, 0]
                else:
                    dh_total = dh[b, j] + acc[i, 0] + dy[t, b, j]
                    i_gate = gates[t, b, j]
                    f = gates[t, b, hidden + j]
                    g = gates[t, b, 2 * hidden + j]
                    o = gates[t, b, 3 * hidden + j]
                    tanh_c = math.tanh(c_all[t + 1, b, j])
                    d_c = dc[b, j] + dh_total * o * (one - tanh_c * tanh_c)
                    d_pre[t, b, j] = d_c * g * i_gate * (one - i_gate)
                    d_pre[t, b, hidden + j] = d_c * c_all[t, b, j] * f * (one - f)
                    d_pre[t, b, 2 * hidden + j] = d_c * i_gate * (one - g * g)
                    d_pre[t, b, 3 * hidden + j] = dh_total * tanh_c * o * (one - o)
                    dc[b, j] = d_c * f
                    dh[b, j] = zero

    # --- GRU (gates r, z, n; reset applied to W_hn h + b_hn, as PyTorch and cuDNN) --------------

    @cuda.jit
    def gru_forward_step(t, gates, w_hh_t, b_hh, h_all, gh_n):
        """``gates`` (T, B, 3H): ``x W_ih^T + b_ih`` in, the activated r, z, n out;
        ``gh_n`` (T, B, H) gets ``W_hn h + b_hn`` (backward needs it); ``h_all`` (T+1, B, H)."""
        j = cuda.blockIdx.x * cols + cuda.threadIdx.x
        batch, hidden = h_all.shape[1], h_all.shape[2]
        sh = cuda.shared.array((batch_rows, chunk), dt)
        acc = cuda.local.array((per_thread, 3), dt)
        recurrent_product(h_all, t, w_hh_t, acc, sh, j, hidden, 3)
        for i in range(per_thread):
            b = cuda.blockIdx.y * batch_rows + cuda.threadIdx.y + i * rows
            if b < batch and j < hidden:
                r = sigmoid(gates[t, b, j] + acc[i, 0] + b_hh[j])
                z = sigmoid(gates[t, b, hidden + j] + acc[i, 1] + b_hh[hidden + j])
                ghn = acc[i, 2] + b_hh[2 * hidden + j]
                n = math.tanh(gates[t, b, 2 * hidden + j] + r * ghn)
                gates[t, b, j] = r
                gates[t, b, hidden + j] = z
                gates[t, b, 2 * hidden + j] = n
                gh_n[t, b, j] = ghn
                h_all[t + 1, b, j] = (one - z) * n + z * h_all[t, b, j]

    @cuda.jit
    def gru_backward_step(t, gates, gh_n, h_all, dy, w_hh, d_in, d_hid, dh):
        """Gate gradients of step ``t``: ``d_in[t]`` (input side) and ``d_hid[t]`` (hidden side,
        where the reset gate scales n's share), each (T, B, 3H); ``dh`` (B, H) carries the direct
        part of dLoss/dh. ``t = -1``: ``dh += d_hid[0] W_hh``."""
        j = cuda.blockIdx.x * cols + cuda.threadIdx.x
        steps, batch = d_hid.shape[0], d_hid.shape[1]
        hidden = dh.shape[1]
        sh = cuda.shared.array((batch_rows, chunk), dt)
        acc = cuda.local.array((per_thread, 1), dt)
        if t + 1 < steps:
            recurrent_product(d_hid, t + 1, w_hh, acc, sh, j, hidden, 1)
        else:
            for i in range(per_thread):
                acc[i, 0] = zero
        for i in range(per_thread):
            b = cuda.blockIdx.y * batch_rows + cuda.threadIdx.y + i * rows
            if b < batch and j < hidden:
                if t < 0:
                    dh[b, j] = dh[b, j] + acc[i, 0]
                else:
                    dh_total = dh[b, j] + acc[i, 0] + dy[t, b, j]
                    r = gates[t, b, j]
                    z = gates[t, b, hidden + j]
                    n = gates[t, b, 2 * hidden + j]
                    d_n = dh_total * (one - z) * (one - n * n)
                    d_z = dh_total * (h_all[t, b, j] - n) * z * (one - z)
                    d_r = d_n * gh_n[t, b, j] * r * (one - r)
                    d_in[t, b, j] = d_r
                    d_in[t, b, hidden + j] = d_z
                    d_in[t, b, 2 * hidden + j] = d_n
                    d_hid[t, b, j] = d_r
                    d_hid[t, b, hidden + j] = d_z
                    d_hid[t, b, 2 * hidden + j] = d_n * r
                    dh[b, j] = dh_total * z

    return SimpleNamespace(
        geometry=geometry,
        fill_zero=fill_zero,
        copy2d=copy2d,
        transpose=transpose,
        column_sums=column_sums,
        matmul=matmul,
        rnn_forward_step=rnn_forward_step,
        rnn_backward_step=rnn_backward_step,
        lstm_forward_step=lstm_forward_step,
        lstm_backward_step=lstm_backward_step,
        gru_forward_step=gru_forward_step,
        gru_backward_step=gru_backward_step,
    )
