"""Forecasting pipeline pieces against scikit-learn, their inverses, and short runs that must learn."""

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error
from sklearn.metrics import r2_score as sk_r2
from sklearn.preprocessing import MinMaxScaler as SkMinMax

from dlbook.sequences.time_series import (
    TARGETS, ForecastConfig, MinMaxScaler, forecast, from_target, mae, make_windows, persistence, r2_score,
    sarima_forecast, seasonal_naive, shuffled_split_score, to_target, train_forecaster, walk_forward,
)


def _seasonal(n=96, seed=0):
    """Quarterly, growing 2% a quarter, a multiplicative season and 1% noise: positive throughout."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 100 * np.exp(0.02 * t) * (1 + 0.4 * np.sin(2 * np.pi * t / 4)) * np.exp(0.01 * rng.standard_normal(n))


def test_metrics_and_scaler_equal_scikit_learn():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(30), rng.standard_normal(30)
    assert r2_score(a, b) == pytest.approx(sk_r2(a, b))
    assert mae(a, b) == pytest.approx(mean_absolute_error(a, b))
    ours, ref = MinMaxScaler().fit(a), SkMinMax().fit(a[:, None])
    np.testing.assert_allclose(ours.transform(b), ref.transform(b[:, None])[:, 0])
    np.testing.assert_allclose(ours.inverse(ours.transform(b)), b)


@pytest.mark.parametrize("target", TARGETS)
def test_from_target_inverts_to_target(target):
    y = _seasonal(20)
    z = to_target(y, target, season=4)
    t = np.arange(4, 20)
    np.testing.assert_allclose(from_target(z[t], y, t, target, 4), y[t])
    assert np.isnan(z[:1]).all() == (target != "level" and target != "log_level")


def test_windows_hold_the_past_only():
    z = np.arange(10.0)
    w = make_windows(z, 3, np.array([3, 7]))
    np.testing.assert_array_equal(w, [[0, 1, 2], [4, 5, 6]])
    with pytest.raises(ValueError, match="lookback must be shorter than the series"):
        make_windows(z, 12, np.array([5]))
    with pytest.raises(ValueError, match="do not fit"):
        make_windows(z, 3, np.array([2]))
    with pytest.raises(ValueError, match="undefined"):
        make_windows(to_target(_seasonal(12), "diff"), 3, np.array([3]))


def test_baselines():
    y = np.arange(10.0)
    np.testing.assert_array_equal(persistence(y, [5, 6]), [4, 5])
    np.testing.assert_array_equal(seasonal_naive(y, [5, 6], season=4), [1, 2])
    with pytest.raises(ValueError, match="season"):
        seasonal_naive(y, [2], season=4)


def test_walk_forward_passes_only_the_future_times():
    y = np.arange(20.0)
    seen = []

    def forecaster(series, origin, times):
        seen.append((origin, times.tolist()))
        return persistence(series, times)

    folds = walk_forward(y, [10, 14], 3, forecaster)
    assert seen == [(10, [10, 11, 12]), (14, [14, 15, 16])]
    np.testing.assert_array_equal(folds[1]["forecast"], [13, 14, 15])
    with pytest.raises(ValueError, match="origin"):
        walk_forward(y, [19], 3, forecaster)
    with pytest.raises(ValueError, match="origins"):
        walk_forward(y, [], 3, forecaster)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="lookback"):
        ForecastConfig(lookback=0)
    with pytest.raises(ValueError, match="target"):
        ForecastConfig(target="levels")
    with pytest.raises(ValueError, match="lookback must be shorter than the series"):
        train_forecaster(_seasonal(10), 8, ForecastConfig(lookback=12, epochs=1))
    with pytest.raises(ValueError, match="finite"):
        to_target(np.array([1.0, np.nan, 2.0]), "level")
    with pytest.raises(ValueError, match="positive"):
        to_target(np.array([1.0, -2.0, 3.0]), "log_level")
    with pytest.raises(ValueError, match="same shape"):
        r2_score([1.0, 2.0, 3.0], [1.0, 2.0])


def test_seasonal_growth_target_learns_to_beat_seasonal_naive():
    """ln y_t − ln y_{t−4} is nearly constant (0.08) here; a trained LSTM must forecast it far better than y_{t−4}."""
    y = _seasonal()
    cfg = ForecastConfig(lookback=8, target="seasonal_log_diff", epochs=150, hidden_size=8)
    f = train_forecaster(y, 80, cfg, seed=0)
    t = np.arange(80, 96)
    ours = mae(y[t], forecast(f, y, t))
    assert ours < 0.3 * mae(y[t], seasonal_naive(y, t, 4)), ours
    assert r2_score(y[t], forecast(f, y, t)) > 0.9


def test_shuffled_split_scores_and_sarima_forecasts():
    y = _seasonal()
    cfg = ForecastConfig(lookback=8, target="seasonal_log_diff", epochs=30, hidden_size=4)
    assert np.isfinite(shuffled_split_score(y, cfg, seed=0))
    t = np.arange(80, 96)
    sarima = sarima_forecast(y, 80, t)
    assert mae(y[t], sarima) < mae(y[t], persistence(y, t))
    with pytest.raises(ValueError, match="train_end"):
        sarima_forecast(y, 80, np.arange(70, 90))
