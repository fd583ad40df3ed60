"""What one gradient of the sampler's log-density costs, with and without the convolution rewrite, per geos.

    .venv/bin/python benchmarks/gradient.py [--geos 1,5,10,20] [--weeks 156] [--calls 300]
    .venv/bin/python benchmarks/gradient.py --convolutions 3,6,10,15,30,60   # the bare convolution, no model

numpyro evaluates the log-density PyMC compiles to JAX (`pymc.sampling.jax.get_jaxified_graph`) once per leapfrog
step. For benchmarks/geos.py's scenario (1 geo: the single-market model; more: the pooled one), this compiles that
graph twice in one process: as the sampler gets it ("rewritten": PyTensor's JAX mode runs
`compiling.unfold_convolve`, windows for a few convolutions, shifted products for many) and with that rewrite
excluded (the adstock then reaches XLA as a grouped convolution, a group per geo and channel), and times jitted
value-and-gradient calls at the model's initial point, single and batched by two (the Laplace start's Hessian
batches its gradients). Prints a markdown table; writes nothing.
"""

from __future__ import annotations

import argparse
import time

import geos  # benchmarks/geos.py (this folder is on sys.path when run as a script)


def per_call_ms(fn, arg, calls: int) -> float:
    import jax

    jax.block_until_ready(fn(arg))
    started = time.perf_counter()
    for _ in range(calls):
        jax.block_until_ready(fn(arg))
    return (time.perf_counter() - started) / calls * 1e3


def model_for(n: int, weeks: int):
    from mmm_assets.core.config import DATE_COLUMN, TARGET_COLUMN
    from mmm_assets.core.inference.sampling import sampling_model
    from mmm_assets.core.modelling import build as build_core
    from mmm_assets.core.modelling import panel, pooling

    cfg = geos.scenario(max(n, 2), weeks, 2, 300, 500)
    names = geos.geo_names(n)
    frames = {g: geos.geo_data(cfg, g, weeks)[0] for g in names}
    if n == 1:
        mmm = build_core.build_mmm(cfg.for_market(names[0]))
        X, y = build_core.split_xy(frames[names[0]])
    else:
        mmm = pooling.build_pooled_mmm(cfg)
        X, y = build_core.split_xy(panel.stack_markets(frames, [DATE_COLUMN, TARGET_COLUMN, *mmm.channel_columns]))
    mmm.build_model(X, y)
    return sampling_model(mmm)


def timings(model, calls: int) -> dict[str, float]:
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree
    from pytensor.compile.mode import get_mode
    from pytensor.graph import FunctionGraph
    from pytensor.link.jax.dispatch import jax_funcify

    from mmm_assets.core.inference.compiling import UNFOLD_TAG

    initial = model.initial_point()
    flat, unravel = ravel_pytree([jnp.asarray(initial[v.name]) for v in model.value_vars])
    out = {"parameters": flat.size}
    for label, mode in (("rewritten", get_mode("JAX")), ("grouped conv", get_mode("JAX").excluding(UNFOLD_TAG))):
        fgraph = FunctionGraph(model.value_vars, [model.logp()], clone=True)
        mode.optimizer.rewrite(fgraph)
        logp = jax_funcify(fgraph)
        value_and_grad = jax.value_and_grad(lambda x, f=logp: f(*unravel(x))[0])
        out[f"{label}, one"] = per_call_ms(jax.jit(value_and_grad), flat, calls)
        out[f"{label}, two"] = per_call_ms(jax.jit(jax.vmap(value_and_grad)), jnp.stack([flat, flat]), calls)
    return out


def convolution_ms(groups: int, calls: int) -> tuple[float, float]:
    """Value and gradient (w.r.t. the kernels) of ``groups`` 167-week convolutions with 12-week kernels, float64:
    JAX's own (XLA's grouped convolution) and one product with the input's windows; ms per call."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(0)
    x, w = jnp.asarray(rng.random((groups, 167))), jnp.asarray(rng.random((groups, 12)))
    windows = x[:, np.arange(156)[:, None] + np.arange(12)[None, ::-1]]
    grouped = jax.vmap(lambda a, b: jnp.convolve(a, b, mode="valid"))
    return (per_call_ms(jax.jit(jax.value_and_grad(lambda k: jnp.sum(grouped(x, k) ** 2))), w, calls),
            per_call_ms(jax.jit(jax.value_and_grad(lambda k: jnp.sum(jnp.einsum("gtk,gk->gt", windows, k) ** 2))),
                        w, calls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--geos", default="1,5,10,20")
    parser.add_argument("--weeks", type=int, default=156)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--convolutions", default=None,
                        help="comma-separated batch sizes: time the bare convolution instead of the model")
    args = parser.parse_args()
    if args.convolutions:
        print("| convolutions in the batch | XLA grouped convolution, ms | one product with the windows, ms |")
        print("|---|---|---|")
        for groups in (int(g) for g in args.convolutions.split(",")):
            grouped, windowed = convolution_ms(groups, args.calls)
            print(f"| {groups} | {grouped:.3f} | {windowed:.3f} |", flush=True)
        return
    print(f"`python benchmarks/gradient.py {' '.join(f'--{k} {v}' for k, v in vars(args).items())}`\n")
    print("| geos | parameters | grouped conv, ms | rewritten, ms | ratio | grouped conv x2, ms | rewritten x2, ms |")
    print("|---|---|---|---|---|---|---|")
    for n in (int(g) for g in args.geos.split(",")):
        t = timings(model_for(n, args.weeks), args.calls)
        print(f"| {n} | {t['parameters']} | {t['grouped conv, one']:.3f} | {t['rewritten, one']:.3f} | "
              f"{t['grouped conv, one'] / t['rewritten, one']:.1f} | {t['grouped conv, two']:.3f} | "
              f"{t['rewritten, two']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
