"""The model head as a tiny interpreted program, forward and backward, per sample.

A compiled model is ``f(x) = head(z)`` with ``z = x @ W + b`` the first linear
map. The head is a sequence of layers, each a row ``(op, n_in, n_out, offset)``
of an int64 table plus parameters in one float64 array starting at ``offset``:

=============  ============================================  =====================
op             computes                                      parameters
=============  ============================================  =====================
AFFINE   (0)   ``y = M x + c``, ``M`` is ``n_out × n_in``    ``M`` row-major, ``c``
SCALE    (1)   ``y = a ⊙ x + c`` (BatchNorm, inference)      ``a``, ``c``
RELU     (2)   ``max(x, 0)``                                 none
LEAKY    (3)   ``x if x > 0 else alpha x``                   ``alpha``
SIGMOID  (4)   ``1 / (1 + exp(-x))``                         none
TANH     (5)   ``tanh(x)``                                   none
=============  ============================================  =====================

The last layer's output is the vector of logits. The scalar explained is one
of them (``OUT_LOGIT``), its softmax probability (``OUT_PROB``) or its log
softmax (``OUT_LOGPROB``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

OP_AFFINE = 0
OP_SCALE = 1
OP_RELU = 2
OP_LEAKY = 3
OP_SIGMOID = 4
OP_TANH = 5

OUT_LOGIT = 0
OUT_PROB = 1
OUT_LOGPROB = 2


@njit(cache=True, inline="always")
def _layer_forward(layers, params, k, x, y):
    op = layers[k, 0]
    n_in = layers[k, 1]
    n_out = layers[k, 2]
    off = layers[k, 3]
    if op == OP_AFFINE:
        for o in range(n_out):
            acc = params[off + n_out * n_in + o]
            row = off + o * n_in
            for i in range(n_in):
                acc += params[row + i] * x[i]
            y[o] = acc
    elif op == OP_SCALE:
        for i in range(n_in):
            y[i] = params[off + i] * x[i] + params[off + n_in + i]
    elif op == OP_RELU:
        for i in range(n_in):
            y[i] = x[i] if x[i] > 0.0 else 0.0
    elif op == OP_LEAKY:
        a = params[off]
        for i in range(n_in):
            y[i] = x[i] if x[i] > 0.0 else a * x[i]
    elif op == OP_SIGMOID:
        for i in range(n_in):
            y[i] = 1.0 / (1.0 + math.exp(-x[i]))
    else:  # OP_TANH
        for i in range(n_in):
            y[i] = math.tanh(x[i])


@njit(cache=True)
def head_forward(layers, params, z, acts):
    """Forward pass of one sample; activations go into ``acts``.

    ``acts`` has length ``n_in(layer 0) + sum(n_out)``: the input ``z`` first, then
    each layer's output in order. Returns the slice of ``acts`` holding the logits.
    """
    n0 = layers[0, 1]
    for i in range(n0):
        acts[i] = z[i]
    start = 0
    for k in range(layers.shape[0]):
        n_in = layers[k, 1]
        n_out = layers[k, 2]
        _layer_forward(
            layers, params, k, acts[start : start + n_in], acts[start + n_in : start + n_in + n_out]
        )
        start += n_in
    return acts[start : start + layers[layers.shape[0] - 1, 2]]


@njit(cache=True, inline="always")
def output_value_grad(logits, target, mode, grad):
    """The explained scalar from the logits, and its gradient w.r.t. the logits in ``grad``."""
    c = logits.shape[0]
    for j in range(c):
        grad[j] = 0.0
    if mode == OUT_LOGIT:
        grad[target] = 1.0
        return logits[target]
    m = logits[0]
    for j in range(1, c):
        if logits[j] > m:
            m = logits[j]
    s = 0.0
    for j in range(c):
        e = math.exp(logits[j] - m)
        grad[j] = e  # each exponential once
        s += e
    logp = logits[target] - m - math.log(s)
    if mode == OUT_LOGPROB:
        for j in range(c):
            grad[j] = -grad[j] / s
        grad[target] += 1.0
        return logp
    p = math.exp(logp)
    for j in range(c):
        grad[j] = -p * grad[j] / s
    grad[target] += p
    return p


@njit(cache=True, inline="always")
def head_backward(layers, params, acts, grad_out, gbuf_a, gbuf_b, grad_z):
    """Pull ``grad_out`` (w.r.t. the logits) back to the head input; result in ``grad_z``.

    ``acts`` must hold the activations of :func:`head_forward` for this sample;
    ``gbuf_a``/``gbuf_b`` are scratch vectors of the widest layer's size.
    """
    nl = layers.shape[0]
    # offsets of each layer's input in acts
    start = 0
    for k in range(nl):
        start += layers[k, 1]
    cur = gbuf_a
    nxt = gbuf_b
    n_last = layers[nl - 1, 2]
    for j in range(n_last):
        cur[j] = grad_out[j]
    for kk in range(nl):
        k = nl - 1 - kk
        op = layers[k, 0]
        n_in = layers[k, 1]
        n_out = layers[k, 2]
        off = layers[k, 3]
        start -= n_in
        x = acts[start : start + n_in]
        y = acts[start + n_in : start + n_in + n_out]
        if op == OP_AFFINE:
            for i in range(n_in):
                nxt[i] = 0.0
            for o in range(n_out):
                g = cur[o]
                if g != 0.0:
                    row = off + o * n_in
                    for i in range(n_in):
                        nxt[i] += params[row + i] * g
        elif op == OP_SCALE:
            for i in range(n_in):
                nxt[i] = params[off + i] * cur[i]
        elif op == OP_RELU:
            for i in range(n_in):
                nxt[i] = cur[i] if x[i] > 0.0 else 0.0
        elif op == OP_LEAKY:
            a = params[off]
            for i in range(n_in):
                nxt[i] = cur[i] if x[i] > 0.0 else a * cur[i]
        elif op == OP_SIGMOID:
            for i in range(n_in):
                nxt[i] = cur[i] * y[i] * (1.0 - y[i])
        else:
            for i in range(n_in):
                nxt[i] = cur[i] * (1.0 - y[i] * y[i])
        tmp = cur
        cur = nxt
        nxt = tmp
    for i in range(layers[0, 1]):
        grad_z[i] = cur[i]


@njit(cache=True, parallel=True)
def head_forward_batch(layers, params, Z, n_acts):
    """Logits for every row of ``Z`` (n × n_in), parallel over rows."""
    n = Z.shape[0]
    c = layers[layers.shape[0] - 1, 2]
    out = np.empty((n, c))
    for r in prange(n):
        acts = np.empty(n_acts)
        logits = head_forward(layers, params, Z[r], acts)
        for j in range(c):
            out[r, j] = logits[j]
    return out


@njit(cache=True, parallel=True)
def head_value_grad_batch(layers, params, Z, targets, mode, n_acts, width):
    """Explained value and its gradient w.r.t. ``z`` for every row of ``Z``.

    Returns ``(values (n,), grads (n, n_in))``; ``targets`` holds one class index per row.
    """
    n = Z.shape[0]
    n0 = layers[0, 1]
    c = layers[layers.shape[0] - 1, 2]
    values = np.empty(n)
    grads = np.empty((n, n0))
    for r in prange(n):
        acts = np.empty(n_acts)
        ga = np.empty(width)
        gb = np.empty(width)
        gl = np.empty(c)
        logits = head_forward(layers, params, Z[r], acts)
        values[r] = output_value_grad(logits, targets[r], mode, gl)
        head_backward(layers, params, acts, gl, ga, gb, grads[r])
    return values, grads


# ------------------------------------------------------- many points at once
@njit(cache=True, inline="always")
def head_forward_columns(layers, params, A, T):
    """Forward pass of ``T`` points at once, the points innermost; returns the logits' first row.

    ``A`` is ``(n_acts, ≥ T)`` laid out like :func:`head_forward`'s ``acts``
    with one column per point: rows ``0 .. n_in−1`` hold the points' head
    inputs, each layer's outputs follow, one row per unit. Each point gets
    exactly the arithmetic :func:`head_forward` does for it (same operations,
    same order; affine terms with a zero weight are skipped, which changes
    nothing for finite activations), so the logits are equal to the per-point
    pass; the loops over the points vectorise.
    """
    start = 0
    for k in range(layers.shape[0]):
        op = layers[k, 0]
        n_in = layers[k, 1]
        n_out = layers[k, 2]
        off = layers[k, 3]
        ys = start + n_in
        if op == OP_AFFINE:
            cb = off + n_in * n_out
            for o in range(n_out):
                y = A[ys + o]
                c = params[cb + o]
                for t in range(T):
                    y[t] = c
                row = off + o * n_in
                for i in range(n_in):
                    w = params[row + i]
                    if w != 0.0:
                        x = A[start + i]
                        for t in range(T):
                            y[t] += w * x[t]
        elif op == OP_SCALE:
            for i in range(n_in):
                a = params[off + i]
                c = params[off + n_in + i]
                x = A[start + i]
                y = A[ys + i]
                for t in range(T):
                    y[t] = a * x[t] + c
        elif op == OP_RELU:
            for i in range(n_in):
                x = A[start + i]
                y = A[ys + i]
                for t in range(T):
                    y[t] = max(x[t], 0.0)
        elif op == OP_LEAKY:
            a = params[off]
            for i in range(n_in):
                x = A[start + i]
                y = A[ys + i]
                for t in range(T):
                    v = x[t]
                    y[t] = v if v > 0.0 else a * v
        elif op == OP_SIGMOID:
            for i in range(n_in):
                x = A[start + i]
                y = A[ys + i]
                for t in range(T):
                    y[t] = 1.0 / (1.0 + math.exp(-x[t]))
        else:  # OP_TANH
            for i in range(n_in):
                x = A[start + i]
                y = A[ys + i]
                for t in range(T):
                    y[t] = math.tanh(x[t])
        start += n_in
    return start
