"""Packaging as users expect: `python -m build` makes an sdist and a wheel, and the wheel
installs into a clean virtual environment where `lip --help` and `import lottery_prior`
work (from the installed files, not this checkout), with the report templates inside."""

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_metadata_has_one_version_and_an_spdx_license():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = meta["project"]
    assert "version" in project["dynamic"] and "version" not in project
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "lottery_prior.__version__"}
    assert project["license"] == "MIT" and (ROOT / "LICENSE").is_file()
    import lottery_prior

    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{lottery_prior.__version__}]" in changelog
    assert "docs" in project["optional-dependencies"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")
def test_wheel_builds_and_installs_into_a_clean_venv(tmp_path):
    dist = tmp_path / "dist"
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "SetuptoolsDeprecationWarning" not in done.stdout + done.stderr
    wheel = next(dist.glob("lottery_prior-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "lottery_prior/report/templates/report.html.j2" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert next(dist.glob("lottery_prior-*.tar.gz"))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(venv / "bin/pip"), "install", "-q", "-c",
                           str(ROOT / "constraints.txt"), str(wheel)],
                          capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    done = subprocess.run([str(venv / "bin/lip"), "--help"], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0 and "usage: lip" in done.stdout, done.stderr[-2000:]
    code = ("import lottery_prior as lp, lottery_prior.report.html; "
            "print(lp.__version__, lp.__file__, len(lp.__all__))")
    done = subprocess.run([str(venv / "bin/python"), "-c", code], capture_output=True,
                          text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    version, location, _ = done.stdout.split()
    import lottery_prior

    assert version == lottery_prior.__version__
    assert str(venv) in location  # the installed copy, not this checkout
