"""Binder's environment (binder/, read by repo2docker): it parses, and its pins are requirements.txt's.

Nothing here can reach mybinder.org, so a real launch stays untested; everything short of
it is checked: the files repo2docker reads, that pip can parse them, that every pin equals
requirements.txt's (PyTorch and torchvision as their CPU wheels of the same versions), and
that postBuild installs what the README's commands install beyond requirements.txt.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"


def _pins(path: Path) -> dict[str, Version]:
    pins, options = {}, []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            options.append(line)
            continue
        req = Requirement(line)  # raises on anything pip would not parse
        (spec,) = req.specifier
        assert spec.operator == "==", line
        pins[req.name.lower()] = Version(spec.version)
    return pins


def test_binder_folder_holds_what_repo2docker_reads():
    assert {p.name for p in BINDER.iterdir()} == {"requirements.txt", "runtime.txt", "postBuild"}
    assert (BINDER / "runtime.txt").read_text() == (REPO / "runtime.txt").read_text()
    assert os.access(BINDER / "postBuild", os.X_OK)


def test_binder_pins_equal_requirements_with_cpu_wheels_of_the_same_torch():
    ours, binder = _pins(REPO / "requirements.txt"), _pins(BINDER / "requirements.txt")
    assert set(binder) == set(ours)
    for name, version in ours.items():
        if name in ("torch", "torchvision"):
            assert binder[name].public == version.public and binder[name].local == "cpu", name
        else:
            assert binder[name] == version, name
    text = (BINDER / "requirements.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text.splitlines()
    assert "-c ../constraints.txt" in text.splitlines() and (REPO / "constraints.txt").is_file()
    assert not re.search(r"^-e ", text, re.M)  # dlbook comes from postBuild


def test_binder_requirements_are_generated_from_requirements():
    out = subprocess.run([sys.executable, str(REPO / "tools" / "binder_requirements.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_pip_parses_binder_requirements():
    from pip._internal.network.session import PipSession
    from pip._internal.req.req_file import parse_requirements

    parsed = list(parse_requirements(str(BINDER / "requirements.txt"), session=PipSession(), constraint=False))
    names = {Requirement(r.requirement).name.lower() for r in parsed if not r.constraint}
    assert {"torch", "torchvision", "jupyter-book"} <= names
    constraints = [r for r in parsed if r.constraint]
    assert any(Requirement(r.requirement).name == "torch" for r in constraints)  # ../constraints.txt was found


def test_postbuild_installs_dlbook_and_the_no_deps_packages():
    lines = [line.strip() for line in (BINDER / "postBuild").read_text().splitlines()]
    assert lines[0].startswith("#!")
    assert "python -m pip install --no-cache-dir --no-deps -e ." in lines
    assert "python -m pip install --no-cache-dir --no-deps -r requirements-nodeps.txt" in lines
    out = subprocess.run(["bash", "-n", str(BINDER / "postBuild")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
