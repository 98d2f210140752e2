"""One-step-ahead forecasting with an LSTM, and how to evaluate it honestly.

A forecaster here reads the last L values of a series (the lookback) and
predicts the next one. Whether it is any good depends less on the network
than on the pipeline around it: what the network is asked to predict (the
level, or a change), what the scaler was fitted on, which windows it trained
on, and what it is compared with. This module makes each of those a setting
(``ForecastConfig``) so that a chapter can switch one at a time and measure
its effect, and evaluates on the future only: by a chronological split or by
walk-forward validation (Tashman 2000, "Out-of-sample tests of forecasting
accuracy", IJF 16; Hyndman & Athanasopoulos 2021, "Forecasting: Principles
and Practice", 3rd ed., sections 5.8 and 5.10).

Contents: target transforms and their inverses (``to_target``,
``from_target``); the scaler (``MinMaxScaler``); windows (``make_windows``);
the model (``LSTMForecaster``); training and one-step forecasts
(``train_forecaster``, ``forecast``); the leaky shuffled split
(``shuffled_split_score``); metrics (``r2_score``, ``mae``) and baselines
(``persistence``, ``seasonal_naive``); walk-forward validation
(``walk_forward``); and the classical benchmark, seasonal ARIMA from
statsmodels (``sarima_forecast``).

Checked against: scikit-learn's ``r2_score``, ``mean_absolute_error`` and
``MinMaxScaler`` (``tests/sequences/test_time_series.py``).

Chapter: ``book/sequences/time-series.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from dlbook.checks import check_choice, check_int, check_number
from dlbook.train import fit

TARGETS = ("level", "log_level", "diff", "seasonal_log_diff")


@dataclass(frozen=True)
class ForecastConfig:
    """Every choice of a forecasting pipeline, one field each."""

    lookback: int = 8  # L: past values of the target the network reads
    target: str = "seasonal_log_diff"  # what it predicts (TARGETS)
    season: int = 4  # m: steps per season (4 quarters, 7 days, 48 half-hours)
    scaler_fit: str = "train"  # "train", or "all": fitted on the future too
    hidden_size: int = 16  # LSTM units
    epochs: int = 200  # full passes over the training windows
    batch_size: int = 0  # 0: one batch of all windows per epoch
    lr: float = 1e-2  # Adam's learning rate
    weight_decay: float = 0.0  # Adam's L2 penalty

    def __post_init__(self):
        check_int("lookback", self.lookback, low=1)
        check_choice("target", self.target, TARGETS)
        check_int("season", self.season, low=1)
        check_choice("scaler_fit", self.scaler_fit, ("train", "all"))
        check_int("hidden_size", self.hidden_size, low=1)
        check_int("epochs", self.epochs, low=1)
        check_int("batch_size", self.batch_size, low=0)
        check_number("lr", self.lr, low=0, low_open=True)
        check_number("weight_decay", self.weight_decay, low=0)

    def with_(self, **changes) -> ForecastConfig:
        """A copy with some fields changed (and checked)."""
        return replace(self, **changes)


# --- what the network predicts -----------------------------------------------


def _series(y) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    if y.ndim != 1 or len(y) < 2:
        raise ValueError(
            f"series must be 1-D with at least 2 values, got shape {y.shape}"
        )
    if not np.isfinite(y).all():
        raise ValueError("series must be finite (no NaN or infinity)")
    return y


def to_target(y: np.ndarray, target: str, season: int = 4) -> np.ndarray:
    """The series the network learns: z_t for t = 0..T−1 (NaN where undefined).

    level: z_t = y_t; log_level: ln y_t; diff: y_t − y_{t−1};
    seasonal_log_diff: ln y_t − ln y_{t−m}, the growth over one season.
    """
    y = _series(y)
    check_choice("target", target, TARGETS)
    check_int("season", season, low=1)
    if target in ("log_level", "seasonal_log_diff") and (y <= 0).any():
        raise ValueError(f"target={target!r} needs a positive series")
    z = np.full_like(y, np.nan)
    if target == "level":
        z[:] = y
    elif target == "log_level":
        z[:] = np.log(y)
    elif target == "diff":
        z[1:] = np.diff(y)
    else:
        if season >= len(y):
            raise ValueError(
                f"season must be shorter than the series ({len(y)}), got "
                f"{season}"
            )
        z[season:] = np.log(y[season:]) - np.log(y[:-season])
    return z


def from_target(
    z_hat: np.ndarray, y: np.ndarray, t: np.ndarray, target: str, season: int
) -> np.ndarray:
    """Forecasts of the level y_t from forecasts ẑ_t and the past of y."""
    if target == "level":
        return z_hat
    if target == "log_level":
        return np.exp(z_hat)
    if target == "diff":
        return y[t - 1] + z_hat
    return y[t - season] * np.exp(z_hat)


class MinMaxScaler:
    """x ↦ (x − min) / (max − min), min and max of the data it was fit on."""

    def fit(self, x: np.ndarray) -> MinMaxScaler:
        x = np.asarray(x, dtype=float)
        x = x[np.isfinite(x)]
        if len(x) == 0:
            raise ValueError("cannot fit a scaler on no finite values")
        self.min, self.max = float(x.min()), float(x.max())
        if self.max == self.min:
            raise ValueError("cannot scale a constant series")
        return self

    def transform(self, x):
        return (np.asarray(x, dtype=float) - self.min) / (self.max - self.min)

    def inverse(self, x):
        return np.asarray(x, dtype=float) * (self.max - self.min) + self.min


def make_windows(z: np.ndarray, lookback: int, t: np.ndarray) -> np.ndarray:
    """The L values before each target time: row i is z[t_i − L : t_i].

    Raises ValueError if a window would start before the series or hold an
    undefined (NaN) value, e.g. a lookback longer than the series.
    """
    check_int("lookback", lookback, low=1)
    t = np.asarray(t, dtype=int)
    if lookback >= len(z):
        raise ValueError(
            f"lookback must be shorter than the series ({len(z)} values), "
            f"got {lookback}"
        )
    if len(t) == 0:
        raise ValueError("no target times: t is empty")
    if t.min() - lookback < 0 or t.max() >= len(z):
        raise ValueError(
            f"windows of lookback {lookback} for times {t.min()}..{t.max()} "
            f"do not fit in a series of {len(z)} values"
        )
    rows = np.stack([z[i - lookback : i] for i in t])
    if not np.isfinite(rows).all():
        raise ValueError(
            "a window holds undefined values: the lookback reaches back "
            "before the first defined value of the target"
        )
    return rows


# --- the model ---------------------------------------------------------------


class LSTMForecaster(nn.Module):
    """An LSTM reads the window; a linear layer maps its last state to ẑ_t.

    Shapes:
        x: (B, L). Returns (B,).
    """

    def __init__(self, hidden_size: int = 16):
        super().__init__()
        self.lstm = nn.LSTM(1, check_int("hidden_size", hidden_size, low=1))
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.lstm(x.T[..., None])  # (L, B, 1) -> (L, B, H)
        return self.head(out[-1])[:, 0]


@dataclass
class Forecaster:
    """A trained pipeline: the model, its scaler and its configuration."""

    model: LSTMForecaster
    scaler: MinMaxScaler
    config: ForecastConfig


def _first_target(cfg: ForecastConfig) -> int:
    """The first time with a full window of defined targets."""
    undefined = {"level": 0, "log_level": 0, "diff": 1}.get(
        cfg.target, cfg.season
    )
    return undefined + cfg.lookback


def train_forecaster(
    y, train_end: int, cfg: ForecastConfig, seed: int = 0, times=None
) -> Forecaster:
    """Train on the windows whose target time is before ``train_end``.

    The scaler is fitted on the targets before ``train_end``, or on the whole
    series if ``cfg.scaler_fit == "all"`` (the leak). ``times`` overrides
    which target times to train on (the shuffled split uses it). Training
    goes through ``dlbook.train.fit`` (mean squared error, Adam).
    """
    y = _series(y)
    check_int("train_end", train_end, low=1, high=len(y))
    z = to_target(y, cfg.target, cfg.season)
    if cfg.lookback >= len(y):
        raise ValueError(
            f"lookback must be shorter than the series ({len(y)} values), got "
            f"{cfg.lookback}"
        )
    if times is None:
        times = np.arange(_first_target(cfg), train_end)
    if len(times) < 2:
        raise ValueError(
            f"train_end={train_end} leaves {len(times)} training windows with "
            f"lookback {cfg.lookback}; at least 2 are needed"
        )
    fitted_on = z if cfg.scaler_fit == "all" else z[:train_end]
    scaler = MinMaxScaler().fit(fitted_on)
    zs = scaler.transform(z)
    x = torch.tensor(
        make_windows(zs, cfg.lookback, times), dtype=torch.float32
    )
    target = torch.tensor(zs[times], dtype=torch.float32)
    g = torch.Generator().manual_seed(check_int("seed", seed, low=0))
    torch.manual_seed(seed)
    model = LSTMForecaster(cfg.hidden_size)
    if cfg.batch_size:
        loader = DataLoader(
            TensorDataset(x, target),
            batch_size=cfg.batch_size,
            shuffle=True,  # the order within the training period: no leak
            generator=g,
        )
    else:
        loader = [(x, target)]  # one batch of every window
    opt = torch.optim.Adam(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    fit(
        model,
        loader,
        opt,
        epochs=cfg.epochs,
        loss_fn=nn.functional.mse_loss,
        metrics={},
    )
    return Forecaster(model, scaler, cfg)


@torch.no_grad()
def forecast(f: Forecaster, y, times) -> np.ndarray:
    """One-step-ahead forecasts of y_t for each t in ``times``.

    Each forecast reads the true values before t (the window), as a
    forecaster running at time t − 1 would.
    """
    y = _series(y)
    cfg = f.config
    times = np.asarray(times, dtype=int)
    z = f.scaler.transform(to_target(y, cfg.target, cfg.season))
    x = torch.tensor(make_windows(z, cfg.lookback, times), dtype=torch.float32)
    f.model.eval()
    z_hat = f.scaler.inverse(f.model(x).numpy())
    return from_target(z_hat, y, times, cfg.target, cfg.season)


def shuffled_split_score(
    y, cfg: ForecastConfig, seed: int = 0, test_fraction: float = 0.2
) -> float:
    """R² on randomly held-out windows, the split that leaks the future.

    All windows of the series are shuffled and split; the model trains on
    80% of them, including windows later than the ones it is tested on.
    """
    y = _series(y)
    times = np.arange(_first_target(cfg), len(y))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(times)
    n_test = max(1, int(round(test_fraction * len(times))))
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    f = train_forecaster(y, len(y), cfg, seed=seed, times=train)
    return r2_score(y[test], forecast(f, y, test))


# --- metrics and baselines ---------------------------------------------------


def r2_score(y_true, y_pred) -> float:
    """R² = 1 − Σ(y − ŷ)² / Σ(y − ȳ)²: skill against predicting the mean ȳ
    of the very values being forecast."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    if y_true.shape != y_pred.shape or y_true.size < 2:
        raise ValueError(
            f"y_true and y_pred must have the same shape with at least 2 "
            f"values, got {y_true.shape} and {y_pred.shape}"
        )
    ss_res = ((y_true - y_pred) ** 2).sum()
    return float(1 - ss_res / ((y_true - y_true.mean()) ** 2).sum())


def mae(y_true, y_pred) -> float:
    """Mean absolute error, in the series' units."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(
            f"y_true and y_pred must have the same non-empty shape, got "
            f"{y_true.shape} and {y_pred.shape}"
        )
    return float(np.abs(y_true - y_pred).mean())


def persistence(y, times) -> np.ndarray:
    """ŷ_t = y_{t−1}: tomorrow as today."""
    times = np.asarray(times, dtype=int)
    return _series(y)[times - 1]


def seasonal_naive(y, times, season: int) -> np.ndarray:
    """ŷ_t = y_{t−m}: the same season last time."""
    times = np.asarray(times, dtype=int)
    check_int("season", season, low=1)
    if times.min() < season:
        raise ValueError(f"times must be at least season={season}")
    return _series(y)[times - season]


# --- walk-forward validation -------------------------------------------------


def walk_forward(
    y,
    origins: Sequence[int],
    horizon: int,
    forecaster: Callable[[np.ndarray, int, np.ndarray], np.ndarray],
) -> list[dict]:
    """Refit at each origin on the past only; forecast the next steps.

    For each origin o, ``forecaster(y, o, times)`` is called with
    times = o, ..., o + horizon − 1 and must use y before o to fit and y
    before each t to forecast it (one step ahead). Returns one record per
    fold: origin, times, forecasts.
    """
    y = _series(y)
    check_int("horizon", horizon, low=1)
    if len(origins) == 0:
        raise ValueError("origins must hold at least one origin")
    folds = []
    for o in origins:
        o = check_int("origin", o, low=1, high=len(y) - horizon)
        times = np.arange(o, o + horizon)
        folds.append(
            {"origin": o, "times": times, "forecast": forecaster(y, o, times)}
        )
    return folds


def sarima_forecast(
    y,
    train_end: int,
    times,
    order=(0, 1, 1),
    seasonal_order=(0, 1, 1, 4),
    log: bool = True,
) -> np.ndarray:
    """One-step-ahead forecasts of a seasonal ARIMA fit before ``train_end``.

    The default is the "airline model" of Box & Jenkins, ARIMA(0,1,1)(0,1,1)_m
    on ln y. Its parameters are estimated on y before ``train_end`` only and
    then kept fixed while the filter reads the later values one at a time.
    """
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    y = _series(y)
    times = np.asarray(times, dtype=int)
    check_int("train_end", train_end, low=1, high=len(y))
    if times.min() < train_end:
        raise ValueError("times must not lie before train_end")
    z = np.log(y) if log else y
    with warnings.catch_warnings():
        # statsmodels warns about its optimizer's convergence on short series
        warnings.simplefilter("ignore")
        res = SARIMAX(
            z[:train_end], order=order, seasonal_order=seasonal_order
        ).fit(disp=False)
        full = res.apply(z[: times.max() + 1])
        pred = full.get_prediction(
            start=int(times.min()), end=int(times.max())
        )
        z_hat = np.asarray(pred.predicted_mean)[times - times.min()]
    return np.exp(z_hat) if log else z_hat
