"""The convolution rewrite (QUICK_MODE, RUN_MODE and the sampler's JAX graphs): the same values and gradients as PyTensor's own
convolution, none of it left."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.tensor.signal import convolve1d
from pytensor.tensor.signal.conv import Convolve1d

from mmm_assets.core.inference.compiling import QUICK_MODE, RUN_MODE


def _convolutions(f) -> int:
    return sum(isinstance(getattr(node.op, "core_op", None), Convolve1d) for node in f.maker.fgraph.toposort())


@pytest.mark.parametrize("ours", [QUICK_MODE, RUN_MODE], ids=["quick", "run"])
@pytest.mark.parametrize("mode", ["full", "valid"])
def test_batched_convolution_and_its_gradients_match_pytensors_own(mode, ours):
    # batch dimensions that broadcast against each other, as the adstock's (channel, draw) against its weights
    x = pt.tensor3("x", shape=(3, 1, 20))
    w = pt.tensor3("w", shape=(1, 5, 4))
    y = convolve1d(x, w, mode=mode)
    cost = (y**2).sum()
    outputs = [y, *pt.grad(cost, [x, w])]
    rng = np.random.default_rng(7)
    values = rng.normal(size=(3, 1, 20)), rng.normal(size=(1, 5, 4))
    reference = pytensor.function([x, w], outputs, mode="FAST_COMPILE")
    rewritten = pytensor.function([x, w], outputs, mode=ours)
    assert _convolutions(reference) > 0
    assert _convolutions(rewritten) == 0
    for got, want in zip(rewritten(*values), reference(*values)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_valid_convolution_takes_the_shorter_input_as_its_kernel_like_numpy():
    x, w = pt.vector("x", shape=(3,)), pt.vector("w", shape=(5,))
    f = pytensor.function([x, w], convolve1d(x, w, mode="valid"), mode=QUICK_MODE)
    assert _convolutions(f) == 0
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, -1.0, 2.0, 0.5, 4.0])
    np.testing.assert_allclose(f(a, b), np.convolve(a, b, "valid"))


def test_a_kernel_of_unknown_length_is_left_to_pytensor():
    x, w = pt.matrix("x"), pt.matrix("w")  # no static lengths: nothing to unroll
    f = pytensor.function([x, w], convolve1d(x, w, mode="full"), mode=QUICK_MODE)
    assert _convolutions(f) == 1
    a, b = np.ones((2, 5)), np.ones((2, 3))
    np.testing.assert_allclose(f(a, b), [np.convolve(a[0], b[0]), np.convolve(a[1], b[1])])


@pytest.mark.parametrize("mode", ["full", "valid"])
@pytest.mark.parametrize("markets", [2, 20])  # 6 convolutions: the windowed form; 60: the shifted products
def test_the_samplers_jax_graphs_convolve_without_xla_convolutions(mode, markets):
    """numpyro's log-density is compiled by PyMC in PyTensor's JAX mode (`get_jaxified_graph`), where the rewrite
    runs too: XLA's grouped convolution, which a batched convolution becomes there, is slow on the CPU and
    grows faster than its batch (docs/performance.md, "The adstock's convolution under JAX")."""
    import jax
    from pymc.sampling.jax import get_jaxified_graph
    from pytensor.compile.mode import get_mode
    from pytensor.graph import FunctionGraph
    from pytensor.link.jax.dispatch import jax_funcify

    from mmm_assets.core.inference.compiling import UNFOLD_TAG, WINDOWS_UP_TO

    x = pt.tensor3("x", shape=(156, markets, 3))
    w = pt.matrix("w", shape=(markets, 3))
    kernel = w[..., None] ** pt.arange(8)  # a geometric adstock's weights, per market and channel
    y = convolve1d(x.transpose(1, 2, 0), kernel, mode=mode)
    cost = (y**2).sum()
    outputs = [cost, pt.grad(cost, w)]
    rng = np.random.default_rng(3)
    values = rng.normal(size=(156, markets, 3)), rng.uniform(0.1, 0.9, size=(markets, 3))

    sampler_fn = get_jaxified_graph([x, w], outputs)
    without = FunctionGraph([x, w], outputs, clone=True)
    get_mode("JAX").excluding(UNFOLD_TAG).optimizer.rewrite(without)
    reference_fn = jax_funcify(without)
    jaxpr = str(jax.make_jaxpr(sampler_fn)(*values))
    assert "conv_general_dilated" not in jaxpr
    assert ("gather" in jaxpr) == (markets * 3 <= WINDOWS_UP_TO)  # the windows are one gather of the input
    assert "conv_general_dilated" in str(jax.make_jaxpr(reference_fn)(*values))
    for got, want in zip(sampler_fn(*values), reference_fn(*values), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10, atol=1e-10)
