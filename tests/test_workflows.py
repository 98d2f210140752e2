"""The GitHub workflows, checked here since they cannot run here: schema, security audit, intent."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

WORKFLOWS = Path(__file__).resolve().parents[1] / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
BIN = Path(sys.executable).parent


def _load(name):
    return yaml.safe_load((WORKFLOWS / name).read_text())


def test_the_three_workflows_exist():
    assert {f.name for f in FILES} == {"tests.yml", "book.yml", "weekly.yml"}


def test_schema():
    out = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, FILES)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_zizmor_audit_has_no_findings():
    """The strictest persona; the two findings ignored in place (self-hosted GPU runner) are explained there."""
    out = subprocess.run([str(BIN / "zizmor"), "--offline", "--persona=auditor", str(WORKFLOWS)], capture_output=True, text=True)
    assert out.returncode == 0 and "No findings" in out.stdout + out.stderr, out.stdout + out.stderr
    for f in FILES:
        for line in f.read_text().splitlines():
            if "zizmor: ignore" in line:
                assert "self-hosted-runner" in line, line


def test_every_action_is_pinned_to_a_commit():
    for f in FILES:
        for uses in re.findall(r"uses:\s*(\S+)", f.read_text()):
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), f"{f.name}: {uses} is not pinned to a commit"


@pytest.mark.parametrize("name", ["tests.yml", "book.yml", "weekly.yml"])
def test_least_privilege(name):
    wf = _load(name)
    assert wf["permissions"] in ({}, {"contents": "read"})
    for job in wf["jobs"].values():
        for scope, level in job.get("permissions", {}).items():
            assert level in ("read", "write") and (level == "read" or scope in ("contents", "pages", "id-token", "issues"))


def test_tests_workflow_runs_the_readme_command():
    readme = (WORKFLOWS.parents[1] / "README.md").read_text()
    command = next(c for c in re.findall(r"```bash\n(.+?)\n```", readme) if c.endswith("pytest"))
    runs = [s.get("run", "") for s in _load("tests.yml")["jobs"]["tests"]["steps"]]
    assert command in runs


def test_book_workflow_builds_full_profile_on_gpu_with_cache_and_deploys():
    wf = _load("book.yml")
    build = wf["jobs"]["build"]
    assert "vars.GPU_RUNNER_LABELS" in build["runs-on"] and '"gpu"' in build["runs-on"]
    assert build["env"]["DLBOOK_PROFILE"] == "full"
    steps = {s.get("name", s.get("uses", "")): s for s in build["steps"]}
    cache = steps["Execution cache"]
    assert cache["with"]["path"] == "_build/.jupyter_cache" and "hashFiles('book/**')" in cache["with"]["key"]
    assert steps["Upload the execution reports of failed notebooks"]["if"] == "failure()"
    assert any("upload-pages-artifact" in u for u in steps)
    assert any("deploy-pages" in s["uses"] for s in wf["jobs"]["deploy"]["steps"])
    assert wf["jobs"]["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}
    publish = " ".join(s.get("run", "") for s in wf["jobs"]["notebooks"]["steps"])
    assert "git push -f" in publish and "notebooks" in publish


def test_weekly_workflow_rebuilds_from_scratch_and_reports():
    wf = _load("weekly.yml")
    assert wf[True]["schedule"]  # PyYAML reads the key `on` as True
    rebuild = " ".join(s.get("run", "") for s in wf["jobs"]["rebuild"]["steps"])
    assert "rm -rf _build" in rebuild and "--all" in rebuild and "python -m dlbook.data --fetch" in rebuild
    colab = " ".join(s.get("run", "") for s in wf["jobs"]["colab"]["steps"])
    assert "jupyter execute" in colab and "dlbook" not in colab.split("pip install -q nbclient ipykernel")[1].split("\n")[0]
    report = wf["jobs"]["report"]
    assert report["if"] == "failure()" and report["permissions"] == {"issues": "write"}
    assert "gh issue create" in report["steps"][0]["run"]
