"""Day-ahead forecasting of electricity demand with temperature and calendar.

At midnight, forecast the next 48 half-hours of demand from the past week
of demand and temperature, and from what is known of the next day: its
calendar (time of day, day of the week, holiday) and its temperature. The
data are Victoria's half-hourly demand, ``vic_elec`` (Hyndman &
Athanasopoulos 2021, "Forecasting: Principles and Practice", 3rd ed.).
The next day's temperature is the measured one, standing in for a weather
forecast, as in the load-forecasting literature's "ex post" evaluation
(Hong & Fan 2016, "Probabilistic electric load forecasting: a tutorial
review", IJF 32): the errors here are therefore lower than a forecaster
would get with real weather forecasts.

The LSTM reads the week one day at a time (``patch`` half-hours per step,
so 7 steps, not 336), and a small network maps its last state and the next
day's covariates to the 48 values. Everything the time-series chapter
taught carries over and is reused from ``dlbook.sequences.time_series``:
the scaler is fitted on the training period only, training windows end
before the forecast origin (and are shuffled only among themselves), the
model is judged by walk-forward validation (``walk_forward``), against
the naive forecasts (``seasonal_naive``) and a classical model, and by
MAE and R² (``mae``, ``r2_score``).

The classical model is a seasonal autoregression with the same covariates,
fitted by ordinary least squares in statsmodels (``AutoReg``) and iterated
over the day (``autoreg_forecast``).

Contents: covariates (``calendar_features``, ``covariates``); windows
(``multistep_windows``); the model (``DemandLSTM``); training and
day-ahead forecasts (``train_demand``, ``forecast_days``); the baselines
(``day_ahead_persistence``, ``autoreg_forecast``).

Checked by ``tests/sequences/test_electricity.py``.
Chapter: ``book/sequences/electricity.md``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from dlbook.checks import (
    check_array,
    check_int,
    check_number,
    check_same_length,
)
from dlbook.sequences.time_series import MinMaxScaler, _series
from dlbook.train import fit


@dataclass(frozen=True)
class DemandConfig:
    """The day-ahead forecaster's settings, one field each."""

    lookback: int = 336  # L: past half-hours read (one week)
    horizon: int = 48  # H: half-hours forecast (one day)
    patch: int = 48  # half-hours per LSTM step (one day)
    stride: int = 4  # half-hours between training windows' origins
    hidden_size: int = 64  # LSTM units
    head_size: int = 128  # units of the head's hidden layer
    epochs: int = 30  # passes over the training windows
    batch_size: int = 128  # windows per step
    lr: float = 3e-3  # Adam's learning rate
    weight_decay: float = 1e-5  # Adam's L2 penalty

    def __post_init__(self):
        check_int("lookback", self.lookback, low=1)
        check_int("horizon", self.horizon, low=1)
        check_int("patch", self.patch, low=1)
        if self.lookback % self.patch:
            raise ValueError(
                f"lookback must be a multiple of patch={self.patch}, got "
                f"{self.lookback}"
            )
        check_int("stride", self.stride, low=1)
        check_int("hidden_size", self.hidden_size, low=1)
        check_int("head_size", self.head_size, low=1)
        check_int("epochs", self.epochs, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_number("lr", self.lr, low=0, low_open=True)
        check_number("weight_decay", self.weight_decay, low=0)

    def with_(self, **changes) -> DemandConfig:
        """A copy with some fields changed (and checked)."""
        return replace(self, **changes)


# --- covariates --------------------------------------------------------------


def calendar_features(index: pd.DatetimeIndex, holiday=None) -> np.ndarray:
    """What the calendar says about each half-hour, known in advance.

    Columns: sin and cos of the time of day, sin and cos of the day of the
    week, and a day-off flag (Saturday, Sunday or a public holiday).
    """
    if not isinstance(index, pd.DatetimeIndex) or len(index) == 0:
        raise ValueError(
            "index must be a non-empty pandas DatetimeIndex, got "
            f"{type(index).__name__} of length {len(index)}"
        )
    day = 2 * np.pi * (index.hour + index.minute / 60).to_numpy() / 24
    week = 2 * np.pi * index.day_of_week.to_numpy() / 7
    off = index.day_of_week.to_numpy() >= 5
    if holiday is not None:
        holiday = np.asarray(holiday, dtype=bool)
        check_same_length(index=index, holiday=holiday)
        off = off | holiday
    return np.stack(
        [np.sin(day), np.cos(day), np.sin(week), np.cos(week), off], axis=1
    ).astype(float)


def covariates(frame: pd.DataFrame) -> np.ndarray:
    """Temperature (°C), then the calendar features: (T, 6).

    ``frame`` is ``load_vic_elec()`` or a slice of it.
    """
    for col in ("Temperature", "Holiday"):
        if col not in frame:
            raise ValueError(f"frame must have a {col!r} column")
    temp = frame["Temperature"].to_numpy(dtype=float)[:, None]
    cal = calendar_features(frame.index, frame["Holiday"].to_numpy())
    return np.concatenate([temp, cal], axis=1)


# --- windows -----------------------------------------------------------------


def multistep_windows(
    y, x, lookback: int, horizon: int, origins
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The past, the known future and the target of each forecast origin.

    For an origin o (the first time forecast), the past is y and x at
    o − L, ..., o − 1, the known future is x at o, ..., o + H − 1, and the
    target is y at o, ..., o + H − 1.

    Shapes:
        y: (T,). x: (T, C), aligned with y. Returns past (N, L, 1 + C),
        future (N, H, C) and target (N, H) for N origins.
    """
    y = _series(y)
    x = check_array("x", np.asarray(x, dtype=float), ndim=2, finite=True)
    check_same_length(y=y, x=x)
    check_int("horizon", horizon, low=1)
    check_int("lookback", lookback, low=1)
    if lookback + horizon > len(y):
        raise ValueError(
            f"lookback + horizon must fit in the series ({len(y)} values), "
            f"got lookback={lookback} and horizon={horizon}"
        )
    origins = np.asarray(origins, dtype=int)
    if origins.ndim != 1 or len(origins) == 0:
        raise ValueError("origins must be a non-empty 1-D array of times")
    if origins.min() < lookback or origins.max() + horizon > len(y):
        raise ValueError(
            f"origins must lie in [{lookback}, {len(y) - horizon}] for "
            f"lookback {lookback} and horizon {horizon}, got "
            f"{origins.min()}..{origins.max()}"
        )
    series = np.concatenate([y[:, None], x], axis=1)  # (T, 1 + C)
    back = origins[:, None] + np.arange(-lookback, 0)  # (N, L)
    ahead = origins[:, None] + np.arange(horizon)  # (N, H)
    return series[back], x[ahead], y[ahead]


# --- the model ---------------------------------------------------------------


class DemandLSTM(nn.Module):
    """An LSTM over the past, one patch per step; a head for the next H.

    The past (demand and temperature, L half-hours) is cut into L / P
    patches of P half-hours; the LSTM reads one patch per step. Its last
    state h and the next H half-hours' covariates feed a two-layer
    network: ŷ = W₂ relu(W₁ [h; vec(x_future)] + b₁) + b₂.

    Args:
        n_inputs: the columns of the past (2: demand, temperature).
        n_future: C, the columns of the known future.
        lookback, horizon, patch: L, H and P.
        hidden_size, head_size: units of the LSTM and of the head.

    Shapes:
        past: (B, L, n_inputs). future: (B, H, C). Returns (B, H).
    """

    def __init__(
        self,
        n_inputs: int,
        n_future: int,
        lookback: int = 336,
        horizon: int = 48,
        patch: int = 48,
        hidden_size: int = 64,
        head_size: int = 128,
    ):
        super().__init__()
        self.lookback, self.horizon, self.patch = lookback, horizon, patch
        self.lstm = nn.LSTM(patch * n_inputs, hidden_size, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(hidden_size + horizon * n_future, head_size),
            nn.ReLU(),
            nn.Linear(head_size, horizon),
        )

    def forward(self, past: Tensor, future: Tensor) -> Tensor:
        b, length, c = past.shape
        steps = past.reshape(b, length // self.patch, self.patch * c)
        _, (h, _) = self.lstm(steps)  # (B, L / P, P c) -> (1, B, hidden)
        return self.head(torch.cat([h[-1], future.flatten(1)], dim=1))


@dataclass
class DemandForecaster:
    """A trained pipeline: the model, its two scalers and its settings."""

    model: DemandLSTM
    y_scaler: MinMaxScaler
    x_scaler: MinMaxScaler
    config: DemandConfig


def _scale_x(x: np.ndarray, scaler: MinMaxScaler) -> np.ndarray:
    """Scale the temperature column; the calendar is already in [−1, 1]."""
    out = x.copy()
    out[:, 0] = scaler.transform(x[:, 0])
    return out


def _tensors(y, x, cfg: DemandConfig, origins, y_scaler, x_scaler):
    past, future, target = multistep_windows(
        y_scaler.transform(y),
        _scale_x(x, x_scaler),
        cfg.lookback,
        cfg.horizon,
        origins,
    )
    past = past[..., :2]  # demand and temperature; the past's calendar
    # is known from the future's (cheaper: 96 inputs per step, not 336)
    return tuple(
        torch.tensor(a, dtype=torch.float32) for a in (past, future, target)
    )


def train_demand(
    y, x, train_end: int, cfg: DemandConfig, seed: int = 0
) -> DemandForecaster:
    """Train on the windows whose targets all lie before train_end.

    The scalers see y and the temperature before train_end only. The
    windows' origins are every cfg.stride half-hours; the loader shuffles
    them, all from the training period. Training goes through fit from
    dlbook.train (mean squared error on the scaled demand, Adam).
    """
    y = _series(y)
    x = check_array("x", np.asarray(x, dtype=float), ndim=2, finite=True)
    check_same_length(y=y, x=x)
    if cfg.lookback + cfg.horizon > len(y):
        raise ValueError(
            f"lookback + horizon must fit in the series ({len(y)} values), "
            f"got lookback={cfg.lookback} and horizon={cfg.horizon}"
        )
    check_int("train_end", train_end, low=1, high=len(y))
    origins = np.arange(cfg.lookback, train_end - cfg.horizon + 1, cfg.stride)
    if len(origins) < 2:
        raise ValueError(
            f"train_end={train_end} leaves {len(origins)} training windows "
            f"of lookback {cfg.lookback} and horizon {cfg.horizon}; at "
            "least 2 are needed"
        )
    y_scaler = MinMaxScaler().fit(y[:train_end])
    x_scaler = MinMaxScaler().fit(x[:train_end, 0])
    past, future, target = _tensors(y, x, cfg, origins, y_scaler, x_scaler)
    g = torch.Generator().manual_seed(check_int("seed", seed, low=0))
    torch.manual_seed(seed)
    model = DemandLSTM(
        2,
        x.shape[1],
        cfg.lookback,
        cfg.horizon,
        cfg.patch,
        cfg.hidden_size,
        cfg.head_size,
    )
    loader = _Batches(past, future, target, cfg.batch_size, g)
    opt = torch.optim.Adam(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    fit(
        _Packed(model),
        loader,
        opt,
        epochs=cfg.epochs,
        loss_fn=nn.functional.mse_loss,
        metrics={},
    )
    return DemandForecaster(model, y_scaler, x_scaler, cfg)


class _Batches:
    """Shuffled mini-batches ((past, future), target) of in-memory windows.

    A plain loop over index slices: with thousands of small windows, a
    DataLoader's per-window collation would cost more than the model.
    """

    def __init__(self, past, future, target, batch_size, generator):
        self.past, self.future, self.target = past, future, target
        self.batch_size, self.generator = batch_size, generator

    def __len__(self):
        return -(-len(self.target) // self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.target), generator=self.generator)
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            yield (self.past[idx], self.future[idx]), self.target[idx]


class _Packed(nn.Module):
    """The model called with one (past, future) argument, as fit calls it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs):
        return self.model(*inputs)


@torch.no_grad()
def forecast_days(f: DemandForecaster, y, x, origins) -> np.ndarray:
    """The H half-hours after each origin, from the true past before it.

    Returns (N, H) forecasts of y in its own units.
    """
    y = _series(y)
    x = np.asarray(x, dtype=float)
    past, future, _ = _tensors(y, x, f.config, origins, f.y_scaler, f.x_scaler)
    f.model.eval()
    return f.y_scaler.inverse(f.model(past, future).numpy())


# --- baselines ---------------------------------------------------------------


def day_ahead_persistence(y, origins, horizon: int) -> np.ndarray:
    """ŷ_{o+h} = y_{o−1}: the last value seen, for every step ahead."""
    y = _series(y)
    check_int("horizon", horizon, low=1)
    origins = np.asarray(origins, dtype=int)
    if origins.min() < 1 or origins.max() + horizon > len(y):
        raise ValueError(
            f"origins must lie in [1, {len(y) - horizon}], got "
            f"{origins.min()}..{origins.max()}"
        )
    return np.repeat(y[origins - 1][:, None], horizon, axis=1)


AUTOREG_LAGS = (1, 2, 48, 336)  # the last hour, yesterday, last week


def _autoreg_exog(x: np.ndarray) -> np.ndarray:
    """Temperature, its square (heating and cooling), the day-off flag."""
    temp = x[:, 0]
    return np.stack([temp, temp**2, x[:, 5]], axis=1)


def autoreg_forecast(y, x, train_end: int, origins, horizon: int):
    """Day-ahead forecasts of a seasonal autoregression with covariates.

    y_t = c + s_(t mod 48) + Σ_k φ_k y_{t−k} + β·(T_t, T_t², off_t) + ε_t,
    with lags k in ``AUTOREG_LAGS`` and a constant per half-hour of the day
    (s), fitted by least squares (statsmodels ``AutoReg``) on y before
    ``train_end``. At each origin the fitted equation is iterated over the
    next ``horizon`` steps, feeding back its own forecasts for the lags
    that fall after the origin.
    """
    from statsmodels.tsa.ar_model import AutoReg

    y = _series(y)
    x = check_array("x", np.asarray(x, dtype=float), ndim=2, finite=True)
    check_same_length(y=y, x=x)
    check_int("horizon", horizon, low=1)
    check_int("train_end", train_end, low=max(AUTOREG_LAGS) + 2, high=len(y))
    origins = np.asarray(origins, dtype=int)
    if origins.min() < train_end or origins.max() + horizon > len(y):
        raise ValueError(
            f"origins must lie in [{train_end}, {len(y) - horizon}], got "
            f"{origins.min()}..{origins.max()}"
        )
    exog = _autoreg_exog(x)
    with warnings.catch_warnings():
        # statsmodels warns that a plain array has no date index
        warnings.simplefilter("ignore")
        res = AutoReg(
            y[:train_end],
            lags=list(AUTOREG_LAGS),
            seasonal=True,
            period=48,
            exog=exog[:train_end],
        ).fit()
        model = AutoReg(
            y,
            lags=list(AUTOREG_LAGS),
            seasonal=True,
            period=48,
            exog=exog,
        )
        out = [
            model.predict(res.params, start=o, end=o + horizon - 1, dynamic=0)
            for o in origins
        ]
    return np.stack(out)
