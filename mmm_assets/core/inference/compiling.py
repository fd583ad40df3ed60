"""How the PyTensor functions a refresh builds outside the sampler are compiled.

What PyMC compiles around a numpyro fit (its starting point), the posterior predictive and the ROAS
counterfactuals are evaluated a few times per refresh. PyTensor's default backend (numba) compiles each of them for
seconds, and again after every fit when the graph holds the posterior, so they compile in ``QUICK_MODE``: PyTensor's
FAST_COMPILE (Python implementations, no compiled code) plus one rewrite. The budget optimiser's objective, evaluated
hundreds of times per refresh by the budget, scenario and goal searches, compiles in ``RUN_MODE`` (C, cached by
code). FAST_COMPILE evaluates a batched 1-D convolution (the adstock,
and its gradient) as one ``numpy.convolve`` call per channel and draw: 4,200 calls per objective evaluation on the
reference scenario, 93 % of the budget steps' time. The rewrite ``shift_sum_convolve`` turns a batched convolution
whose kernel length is known into the sum of that many shifted products, a handful of whole-array operations.

A second rewrite, ``unfold_convolve``, is tagged ``jax``, so PyTensor's JAX mode runs it: PyMC compiles numpyro's
log-density there (``pymc.sampling.jax.get_jaxified_graph``, also the Laplace start's), and JAX would otherwise turn
a batched convolution into XLA's grouped convolution, one group per market and channel, whose cost on the CPU grows
faster than the number of groups. It writes the convolution as one product with the input's windows for a few
convolutions and as the shifted products for many (docs/performance.md, "The adstock's convolution under JAX").
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode, get_mode, optdb
from pytensor.graph.rewriting.basic import in2out, node_rewriter
from pytensor.tensor.basic import get_underlying_scalar_constant_value
from pytensor.tensor.blockwise import Blockwise
from pytensor.tensor.exceptions import NotScalarConstantError
from pytensor.tensor.signal.conv import Convolve1d

#: Tag of the rewrite in PyTensor's rewrite database; only modes that include it run it.
SHIFT_SUM_TAG = "mmm_assets_shift_sum"
#: Tag of the JAX variant (also tagged ``jax``); excluding it gives PyTensor's own JAX graph.
UNFOLD_TAG = "mmm_assets_unfold"
#: Under JAX, batches of at most this many convolutions (markets x channels) take the windowed form, larger ones the
#: shifted products. Chosen by measurement (`benchmarks/gradient.py`, docs/performance.md "The adstock's convolution
#: under JAX"): per gradient the windows cost less at 3 and 15 convolutions, the shifted products at 30 and 60.
WINDOWS_UP_TO = 24


def _shifted_products(x, w, k: int, length):
    """``out[..., i] = sum_j w[..., j] * x[..., i + k - 1 - j]`` for ``i < length``, ``w`` of static length ``k``."""
    terms = [w[..., j, None] * x[..., k - 1 - j : k - 1 - j + length] for j in range(k)]
    return pt.add(*terms) if k > 1 else terms[0]


def _static_length(fgraph, var, axis: int = -1) -> int | None:
    """An axis's length (the last by default) when it is known before running: from the type, or from the shapes
    PyTensor's shape inference tracks through the graph (after other rewrites have replaced the nodes that made it)."""
    if var.type.shape[axis] is not None:
        return var.type.shape[axis]
    shapes = getattr(fgraph, "shape_feature", None)
    if shapes is None:
        return None
    try:
        return int(get_underlying_scalar_constant_value(shapes.get_shape(var, axis % var.ndim)))
    except NotScalarConstantError:
        return None


def _unfolded_products(x, w, k: int, length):
    """The same sum as :func:`_shifted_products`, as one product with ``x``'s windows (``x[..., i + k - 1 - j]`` for
    every ``i, j``, taken by one constant index) summed over ``j``. Under JAX cheaper than the shifted products for a
    few convolutions (those cost more than the convolution they replace on a single market's three channels), dearer
    for many. A ``length`` that is not static leaves the shifted products."""
    if not isinstance(length, int):
        return _shifted_products(x, w, k, length)
    windows = np.arange(length)[:, None] + (k - 1 - np.arange(k))[None, :]
    return (x[..., windows] * w[..., None, :]).sum(axis=-1)


def _as_products(fgraph, node, products):
    """``convolve1d(x, w)`` batched over leading dimensions, as ``products(x, w, k, length)`` when the kernel length
    ``k`` is static. "full" mode pads ``x`` with ``k - 1`` zeros on both sides. "valid" mode, like numpy, convolves
    with the shorter of the two as the kernel, so it needs both lengths static. Leaves any other node."""
    if not isinstance(node.op.core_op, Convolve1d):
        return None
    x, w, full_mode = node.inputs
    n, k = _static_length(fgraph, x), _static_length(fgraph, w)
    try:
        full = bool(get_underlying_scalar_constant_value(full_mode))
    except NotScalarConstantError:
        return None
    if full and k is not None:
        zeros = pt.zeros((*x.shape[:-1], k - 1), dtype=x.dtype)
        padded = pt.concatenate([zeros, x, zeros], axis=-1)
        out = products(padded, w, k, x.shape[-1] + k - 1 if n is None else n + k - 1)
    elif not full and n is not None and k is not None:
        if n < k:
            x, w, n, k = w, x, k, n
        out = products(x, w, k, n - k + 1)
    else:
        return None
    return [out.astype(node.outputs[0].dtype)]


@node_rewriter([Blockwise])
def shift_sum_convolve(fgraph, node):
    """A batched convolution of static kernel length as shifted products (:func:`_as_products`), for QUICK_MODE."""
    return _as_products(fgraph, node, _shifted_products)


@node_rewriter([Blockwise])
def unfold_convolve(fgraph, node):
    """A batched convolution of static kernel length for JAX: one product with its input's windows when the batch
    holds at most ``WINDOWS_UP_TO`` convolutions, shifted products when it holds more or its size is not static."""
    if not isinstance(node.op.core_op, Convolve1d):
        return None
    out = node.outputs[0]
    batch = [_static_length(fgraph, out, axis) for axis in range(out.ndim - 1)]
    few = None not in batch and int(np.prod(batch)) <= WINDOWS_UP_TO
    return _as_products(fgraph, node, _unfolded_products if few else _shifted_products)


#: Registered with PyTensor's own rewrite database (its public extension point): QUICK_MODE includes the first by its
#: tag, PyTensor's JAX mode the second by ``jax`` (every JAX compile in a process that imported this module).
optdb.register("mmm_assets_shift_sum_convolve", in2out(shift_sum_convolve), SHIFT_SUM_TAG, position=1.6)
optdb.register("mmm_assets_unfold_convolve", in2out(unfold_convolve), UNFOLD_TAG, "jax", position=1.6)
#: FAST_COMPILE with ``shift_sum_convolve``.
QUICK_MODE = get_mode("FAST_COMPILE").including(SHIFT_SUM_TAG)
#: For the functions a refresh evaluates hundreds of times (the budget optimiser's objective, its gradient and the
#: response of a plan: every budget, scenario and goal search): PyTensor's C backend with its full rewrites and
#: ``shift_sum_convolve``. Its compiled modules are cached on disk by their code, not by the posterior values the graph
#: holds, so a new fit reuses them where numba (PyTensor's default backend) compiled the objective again. Without a C
#: compiler (``pytensor.config.cxx`` empty) the full rewrites' fused operations would run in Python, slower than
#: QUICK_MODE, so QUICK_MODE it is.
RUN_MODE = Mode(linker="cvm", optimizer="fast_run").including(SHIFT_SUM_TAG) if pytensor.config.cxx else QUICK_MODE


def quick_compile() -> contextlib.AbstractContextManager:
    """PyTensor functions compiled in the block use ``QUICK_MODE``."""
    return pytensor.config.change_flags(mode=QUICK_MODE)
