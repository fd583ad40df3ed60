import numpy as np
import pandas as pd

from mmm_assets.core.config import load_config
from mmm_assets.core.config.paths import DEFAULT_CONFIG
from mmm_assets.core.synthetic.generator import generate, geometric_adstock


def _reference():
    return load_config(DEFAULT_CONFIG).data.synthetic


def test_geometric_adstock_is_normalised_and_carries_over():
    out = geometric_adstock(np.array([1.0, 0, 0, 0, 0]), alpha=0.5, l_max=3)
    weights = np.array([1, 0.5, 0.25]) / 1.75
    assert np.allclose(out, [weights[0], weights[1], weights[2], 0, 0])
    # a constant spend converges to itself once the window is full (normalised weights)
    assert np.isclose(geometric_adstock(np.ones(10), 0.6, 4)[-1], 1.0)


def test_reference_scenario_shape_and_spend_ranges():
    source = _reference()
    frame, truth = generate(source)
    assert len(frame) == 208
    assert frame["date"].iloc[0] == pd.Timestamp("2019-01-07")
    assert (frame["date"].diff().dropna() == pd.Timedelta(days=7)).all()
    for name, channel in source.channels.items():
        assert frame[name].min() >= channel.spend_min - 0.01
        assert frame[name].max() <= channel.spend_max + 0.01
        assert frame[name].max() - frame[name].min() > 0.9 * (channel.spend_max - channel.spend_min)
    assert list(truth.parameters.index) == list(source.channels)


def test_outcome_follows_the_documented_formula_without_noise():
    source = _reference().model_copy(update={"noise_sigma": 0.0})
    frame, truth = generate(source)
    expected = np.full(len(frame), source.intercept)
    for name, c in source.channels.items():
        scaled = frame[name].to_numpy() / frame[name].max()
        carried = np.array(
            [sum(c.adstock_alpha**l * scaled[t - l] for l in range(12) if t - l >= 0) for t in range(len(frame))]
        ) / sum(c.adstock_alpha**l for l in range(12))
        expected += c.beta * (1 - np.exp(-c.saturation_lam * carried)) / (1 + np.exp(-c.saturation_lam * carried))
    assert np.allclose(frame["y"].to_numpy(), source.outcome_scale * expected)
    assert np.allclose(
        truth.contributions[list(source.channels)].sum(axis=1) + source.outcome_scale * source.intercept, frame["y"]
    )


def test_noise_has_the_configured_scale_and_the_seed_reproduces():
    source = _reference()
    noisy, _ = generate(source)
    again, _ = generate(source)
    pd.testing.assert_frame_equal(noisy, again)
    clean, _ = generate(source.model_copy(update={"noise_sigma": 0.0}))
    residual = (noisy["y"] - clean["y"]) / source.outcome_scale
    assert abs(residual.std() - source.noise_sigma) < 0.2 * source.noise_sigma
    other, _ = generate(source.model_copy(update={"seed": source.seed + 1}))
    assert not np.allclose(other["adwords"], noisy["adwords"])


def test_channel_response_uses_history_for_carry_over():
    frame, truth = generate(_reference())
    spend = frame["linkedin"].to_numpy()
    full = truth.channel_response("linkedin", spend)
    tail = truth.channel_response("linkedin", spend[100:], history=spend[:100])
    assert np.allclose(full[100:], tail)
    assert np.allclose(full, truth.contributions["linkedin"])
