"""How the PyTensor functions a refresh builds outside the sampler are compiled.

What PyMC compiles around a numpyro fit (its starting point), the posterior predictive, the ROAS counterfactuals
and the budget optimiser's objective are evaluated once or a few hundred times per refresh. PyTensor's default backend
(numba) compiles each of them for seconds (the optimiser's objective for ~18 s on an empty cache, and again after
every fit, since it holds the posterior), so they compile in ``QUICK_MODE``: PyTensor's FAST_COMPILE (Python
implementations, no compiled code) plus one rewrite. FAST_COMPILE evaluates a batched 1-D convolution (the adstock,
and its gradient) as one ``numpy.convolve`` call per channel and draw: 4,200 calls per objective evaluation on the
reference scenario, 93 % of the budget steps' time. The rewrite ``shift_sum_convolve`` turns a batched convolution
whose kernel length is known into the sum of that many shifted products, a handful of whole-array operations.
"""

from __future__ import annotations

import contextlib

import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import get_mode, optdb
from pytensor.graph.rewriting.basic import in2out, node_rewriter
from pytensor.tensor.basic import get_underlying_scalar_constant_value
from pytensor.tensor.blockwise import Blockwise
from pytensor.tensor.exceptions import NotScalarConstantError
from pytensor.tensor.signal.conv import Convolve1d

#: Tag of the rewrite in PyTensor's rewrite database; only modes that include it run it.
SHIFT_SUM_TAG = "mmm_assets_shift_sum"


def _shifted_products(x, w, k: int, length):
    """``out[..., i] = sum_j w[..., j] * x[..., i + k - 1 - j]`` for ``i < length``, ``w`` of static length ``k``."""
    terms = [w[..., j, None] * x[..., k - 1 - j : k - 1 - j + length] for j in range(k)]
    return pt.add(*terms) if k > 1 else terms[0]


def _static_length(fgraph, var) -> int | None:
    """The last dimension's length when it is known before running: from the type, or from the shapes PyTensor's
    shape inference tracks through the graph (after other rewrites have replaced the nodes that made it)."""
    if var.type.shape[-1] is not None:
        return var.type.shape[-1]
    shapes = getattr(fgraph, "shape_feature", None)
    if shapes is None:
        return None
    try:
        return int(get_underlying_scalar_constant_value(shapes.get_shape(var, var.ndim - 1)))
    except NotScalarConstantError:
        return None


@node_rewriter([Blockwise])
def shift_sum_convolve(fgraph, node):
    """``convolve1d(x, w)`` batched over leading dimensions, as the sum of ``k`` shifted products when the kernel
    length ``k`` is static. "full" mode pads ``x`` with ``k - 1`` zeros on both sides. "valid" mode, like numpy,
    convolves with the shorter of the two as the kernel, so it needs both lengths static. Leaves any other node."""
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
        out = _shifted_products(padded, w, k, (x.shape[-1] if n is None else n) + k - 1)
    elif not full and n is not None and k is not None:
        if n < k:
            x, w, n, k = w, x, k, n
        out = _shifted_products(x, w, k, n - k + 1)
    else:
        return None
    return [out.astype(node.outputs[0].dtype)]


optdb.register("mmm_assets_shift_sum_convolve", in2out(shift_sum_convolve), SHIFT_SUM_TAG, position=1.6)
#: FAST_COMPILE with ``shift_sum_convolve``.
QUICK_MODE = get_mode("FAST_COMPILE").including(SHIFT_SUM_TAG)


def quick_compile() -> contextlib.AbstractContextManager:
    """PyTensor functions compiled in the block use ``QUICK_MODE``."""
    return pytensor.config.change_flags(mode=QUICK_MODE)
