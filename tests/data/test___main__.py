from dlbook.data.__main__ import main


def test_listing_shows_every_entry_and_its_state(data_home, capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert str(data_home) in out
    assert "cora" in out and "in the cache" in out and "ships in scikit-image" in out


def test_fetch_reports_failures(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    assert main(["--fetch", "cora", "no-such-dataset"]) == 1
    err = capsys.readouterr().err
    assert "cora: FAILED" in err and "no-such-dataset: FAILED" in err


def test_fetch_present_dataset(data_home, capsys):
    assert main(["--fetch", "tiny-shakespeare"]) == 0
    assert "tiny-shakespeare:" in capsys.readouterr().out
