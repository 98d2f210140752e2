"""`.ci/run`, with the README's command replaced by a stand-in: pip's noise filtered, stages timed.

The real run takes half an hour; this runs the script's own logic in seconds, in a copy of
the repository's layout, with chromium and fc-list stubbed so that nothing is installed.
"""

import os
import re
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README_LINE = ("python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt -c constraints.txt && "
               ".venv/bin/pip install -q --no-deps -r requirements-nodeps.txt && .venv/bin/pytest")
STAND_IN = """\
echo "WARNING: Location 'file:///opt/pypi-more/simple/foo/' is ignored: it is neither a file nor a directory."
echo "WARNING: a warning that matters"
echo "============================= test session starts =============================="
mkdir -p artifacts
echo '{"stages": [{"stage": "unit tests", "tests": 7, "seconds": 12.4}, {"stage": "chapters", "tests": 3, "seconds": 61.0}]}' > artifacts/pytest-stages.json
exit 3"""


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_ci_run_filters_pip_noise_times_stages_and_keeps_pytests_status(tmp_path):
    script = (REPO / ".ci" / "run").read_text()
    assert README_LINE in script.splitlines()
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    (tmp_path / "shared" / "datasets").mkdir(parents=True)
    _executable(repo / ".ci" / "run", script.replace(README_LINE, STAND_IN))
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    _executable(bin_ / "chromium", "#!/bin/sh\necho Chromium 1.0\n")
    _executable(bin_ / "fc-list", "#!/bin/sh\necho 'Noto Color Emoji'\n")
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"}
    out = subprocess.run(["bash", str(repo / ".ci" / "run")], capture_output=True, text=True, env=env, timeout=60)
    log = out.stdout + out.stderr
    assert out.returncode == 3, log  # pytest's exit status, after the table
    assert "is ignored" not in log and "WARNING: a warning that matters" in log
    for stage in ("system packages", "datasets", "install: venv, pip", "pytest ",
                  "pytest: unit tests (7 tests)", "pytest: chapters (3 tests)", "total"):
        assert re.search(rf"^\s*{re.escape(stage)}.*\d+\s+\d+:\d\d$", log, re.M), (stage, log)
    assert "CI FAILED (pytest exit status 3)" in log
