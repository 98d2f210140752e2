"""Day-ahead demand forecasting: windows, covariates, no leak, bad input, a short run that must learn."""

import numpy as np
import pandas as pd
import pytest
import torch

from dlbook.sequences.electricity import (
    DemandConfig,
    DemandLSTM,
    autoreg_forecast,
    calendar_features,
    covariates,
    day_ahead_persistence,
    forecast_days,
    multistep_windows,
    train_demand,
)
from dlbook.sequences.time_series import mae, seasonal_naive


def _demand(days=42, seed=0):
    """Half-hourly demand: a daily shape, lower at weekends, up with the square of a random daily temperature."""
    rng = np.random.default_rng(seed)
    index = pd.date_range(
        "2013-01-07", periods=48 * days, freq="30min", tz="Australia/Melbourne"
    )
    day_temp = np.repeat(rng.uniform(10, 35, days), 48)
    temp = day_temp + 3 * np.sin(2 * np.pi * (np.arange(48 * days) % 48) / 48)
    shape = 1 + 0.3 * np.sin(2 * np.pi * (np.arange(48 * days) % 48 - 12) / 48)
    weekend = index.day_of_week >= 5
    y = (
        4000 * shape * np.where(weekend, 0.85, 1.0)
        + 4 * (temp - 18) ** 2
        + 30 * rng.standard_normal(48 * days)
    )
    frame = pd.DataFrame(
        {
            "Demand": y,
            "Temperature": temp,
            "Holiday": np.zeros(48 * days, bool),
        },
        index=index,
    )
    return frame


def test_calendar_features():
    index = pd.DatetimeIndex(
        ["2014-01-04 06:00", "2014-01-06 18:00", "2014-01-07 00:00"]
    )  # Sat, Mon, Tue
    f = calendar_features(index, holiday=[False, False, True])
    np.testing.assert_allclose(
        f[:, :2], [[1, 0], [-1, 0], [0, 1]], atol=1e-12
    )  # sin, cos of the time of day
    np.testing.assert_allclose(
        f[:, 3], np.cos(2 * np.pi * np.array([5, 0, 1]) / 7)
    )
    np.testing.assert_array_equal(
        f[:, 4], [1, 0, 1]
    )  # Saturday, a working Monday, a holiday
    with pytest.raises(
        ValueError, match="index and holiday must have the same length"
    ):
        calendar_features(index, holiday=[True])


def test_windows_hold_the_past_the_known_future_and_the_target():
    y = np.arange(20.0)
    x = 100 + np.arange(40.0).reshape(20, 2)
    past, future, target = multistep_windows(
        y, x, lookback=4, horizon=3, origins=[4, 10]
    )
    assert (
        past.shape == (2, 4, 3)
        and future.shape == (2, 3, 2)
        and target.shape == (2, 3)
    )
    np.testing.assert_array_equal(past[1, :, 0], [6, 7, 8, 9])
    np.testing.assert_array_equal(past[1, :, 1:], x[6:10])
    np.testing.assert_array_equal(future[1], x[10:13])
    np.testing.assert_array_equal(target[0], [4, 5, 6])


def test_bad_input_is_a_clear_error():
    y, x = np.arange(20.0) + 1, np.ones((20, 2))
    with pytest.raises(
        ValueError, match="lookback \\+ horizon must fit in the series"
    ):
        multistep_windows(y, x, lookback=30, horizon=3, origins=[5])
    with pytest.raises(ValueError, match="horizon must be an integer >= 1"):
        multistep_windows(y, x, lookback=4, horizon=0, origins=[5])
    with pytest.raises(ValueError, match="y and x must have the same length"):
        multistep_windows(y, x[:19], lookback=4, horizon=3, origins=[5])
    with pytest.raises(ValueError, match="origins must lie in"):
        multistep_windows(y, x, lookback=4, horizon=3, origins=[2])
    with pytest.raises(ValueError, match="x must be finite"):
        multistep_windows(
            y, np.full((20, 2), np.nan), lookback=4, horizon=3, origins=[5]
        )
    with pytest.raises(ValueError, match="horizon must be an integer >= 1"):
        DemandConfig(horizon=-1)
    with pytest.raises(
        ValueError, match="lookback must be a multiple of patch"
    ):
        DemandConfig(lookback=100, patch=48)
    with pytest.raises(ValueError, match="y and x must have the same length"):
        train_demand(
            y,
            x[:10],
            15,
            DemandConfig(lookback=4, horizon=2, patch=2, epochs=1),
        )
    with pytest.raises(ValueError, match="lookback \\+ horizon must fit"):
        train_demand(
            y, x, 20, DemandConfig(lookback=48, horizon=2, patch=2, epochs=1)
        )
    with pytest.raises(ValueError, match="horizon must be an integer >= 1"):
        day_ahead_persistence(y, [5], 0)


def test_model_shapes():
    model = DemandLSTM(
        2, 6, lookback=12, horizon=5, patch=4, hidden_size=3, head_size=7
    )
    out = model(torch.zeros(8, 12, 2), torch.zeros(8, 5, 6))
    assert out.shape == (8, 5)


def test_training_does_not_see_the_future():
    """Values after train_end (demand and temperature) change neither the scalers nor the weights."""
    frame = _demand(days=14)
    y, x = frame["Demand"].to_numpy(), covariates(frame)
    cfg = DemandConfig(
        lookback=96,
        horizon=48,
        stride=24,
        hidden_size=4,
        head_size=8,
        epochs=2,
    )
    end = 48 * 10
    a = train_demand(y, x, end, cfg, seed=0)
    y2, x2 = y.copy(), x.copy()
    y2[end:] *= 3
    x2[end:, 0] += 20
    b = train_demand(y2, x2, end, cfg, seed=0)
    assert (a.y_scaler.min, a.y_scaler.max) == (b.y_scaler.min, b.y_scaler.max)
    assert (a.x_scaler.min, a.x_scaler.max) == (b.x_scaler.min, b.x_scaler.max)
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_baselines():
    y = np.arange(1.0, 21.0)
    np.testing.assert_array_equal(
        day_ahead_persistence(y, [5, 10], 3), [[5, 5, 5], [10, 10, 10]]
    )
    frame = _demand(days=21)
    y, x = frame["Demand"].to_numpy(), covariates(frame)
    origins = 48 * np.arange(17, 20)
    ar = autoreg_forecast(y, x, 48 * 17, origins, 48)
    assert ar.shape == (3, 48)
    t = (origins[:, None] + np.arange(48)).ravel()
    assert mae(y[t], ar.ravel()) < 0.5 * mae(y[t], seasonal_naive(y, t, 48))
    with pytest.raises(ValueError, match="origins must lie in"):
        autoreg_forecast(y, x, 48 * 17, [48 * 10], 48)


def test_lstm_learns_to_beat_the_seasonal_naive_forecast():
    """Temperature changes from day to day, so yesterday's curve is wrong by 4 (ΔT)²-ish; the LSTM reads tomorrow's T."""
    frame = _demand(days=35)
    y, x = frame["Demand"].to_numpy(), covariates(frame)
    cfg = DemandConfig(
        lookback=96,
        stride=4,
        hidden_size=16,
        head_size=32,
        epochs=100,
        lr=1e-2,
    )
    end = 48 * 28
    f = train_demand(y, x, end, cfg, seed=0)
    origins = end + 48 * np.arange(7)
    t = (origins[:, None] + np.arange(48)).ravel()
    ours = mae(y[t], forecast_days(f, y, x, origins).ravel())
    assert ours < 0.6 * mae(y[t], seasonal_naive(y, t, 48)), ours
