"""`python -m cnas.profile`: table, --json, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cnas import complexity as C
from cnas.profile import main, profile
from cnas.errors import ArchError, ConfigError

ROOT = Path(__file__).resolve().parents[1]
EE_ARCH = {"d": [2, 3, 4, 2, 4], "ks": [3, 5, 7, 3, 5, 7, 3, 5, 7, 3, 5, 7, 3, 5, 7],
           "e": [3, 4, 6, 3, 4, 6, 3, 4, 6, 3, 4, 6, 3, 4, 6], "t": [0.1, 1, 0.2, 0.2], "r": 96}
PLAIN = {"d": [2] * 5, "ks": [3] * 10, "e": [6] * 10}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnas.profile", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def write(tmp_path: Path, obj, name: str = "net.subnet") -> str:
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(path)


def test_table_and_json(tmp_path):
    path = write(tmp_path, EE_ARCH)
    out = cli(path)
    assert out.returncode == 0, out.stderr
    assert "params" in out.stdout and "activations" in out.stdout and "final" in out.stdout
    assert len([ln for ln in out.stdout.splitlines() if ln.strip().startswith(("1 ", "2 ", "3 "))]) == 3
    out = cli(path, "--json", "--n_classes", "100")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    expected = C.count(EE_ARCH, n_classes=100)
    for key, val in expected.items():
        assert info[key] == pytest.approx(val, abs=1e-9)
    assert info["resolution"] == 96 and info["n_classes"] == 100 and info["search_space"] == "eemobilenetv3"


@pytest.mark.parametrize("content,args,needle", [
    (None, [], "not found"),
    ("{not json", [], "not valid JSON"),
    (PLAIN, [], "resolution"),  # no r and no --resolution
    (dict(PLAIN, d=[2, 2]), ["--resolution", "32"], "'d'"),
    (EE_ARCH, ["--search_space", "mobilenetv3"], "'t'"),
    (PLAIN, ["--resolution", "0"], "resolution"),
])
def test_errors_are_one_line_exit_2(tmp_path, content, args, needle):
    path = str(tmp_path / "missing.subnet") if content is None else write(tmp_path, content)
    out = cli(path, *args)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnas.profile: error:") and needle in lines[0], out.stderr


def test_main_in_process(tmp_path, capsys):
    path = write(tmp_path, PLAIN)
    assert main([path, "--resolution", "64", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["macs"] == pytest.approx(C.count(PLAIN, 10, 64)["macs"])
    assert info["arch"] == PLAIN and info["search_space"] == "mobilenetv3"
    with pytest.raises(ArchError):
        profile([1, 2])
    with pytest.raises(ConfigError):
        profile(dict(PLAIN, r=32), n_classes=0)
