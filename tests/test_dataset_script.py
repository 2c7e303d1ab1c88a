"""scripts/ensure-dataset.sh, branch by branch, with the dataset directory mocked and fake
apt-get / id / sudo / python on PATH: nothing is installed or downloaded."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "ensure-dataset.sh"
BASH = shutil.which("bash") or "/bin/bash"
LOAD_CODE = "load_split('fashion-mnist', None, 'train'); load_split('fashion-mnist', None, 'test')"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def fake(path: Path, body: str) -> Path:
    path.write_text(f"#!{BASH}\n{body}\n")
    path.chmod(0o755)
    return path


class Sandbox:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.dir = tmp / "fashion-mnist"  # PATCHBENCH_FMNIST_DIR, absent unless a test makes it
        self.apt_log = tmp / "apt.log"
        self.py_log = tmp / "python.log"
        self.sudo_log = tmp / "sudo.log"
        self.python = tmp / "python"

    def apt_get(self, rc: int = 0):
        """Records each call's arguments; `install` creates the dataset dir unless it fails."""
        fake(self.bin / "apt-get", f'echo "$*" >> "{self.apt_log}"\n'
             f'if [ "{rc}" -eq 0 ] && [ "$1" = install ]; then mkdir -p "{self.dir}"; fi\n'
             f"exit {rc}")

    def uid(self, uid: int):
        fake(self.bin / "id", f"echo {uid}")

    def fake_python(self, rc: int = 0, stderr: str = ""):
        fake(self.python, f'printf "%s\\n" "$*" >> "{self.py_log}"\n'
             + (f"printf '%s' '{stderr}' >&2\n" if stderr else "") + f"exit {rc}")

    def run(self, *, system_path: bool = True) -> subprocess.CompletedProcess:
        """system_path=False: PATH is the fake bin dir alone, so `command -v apt-get` fails."""
        path = str(self.bin) + (os.pathsep + os.environ.get("PATH", "/usr/bin:/bin") if system_path else "")
        env = {"PATH": path, "HOME": str(self.tmp), "PATCHBENCH_FMNIST_DIR": str(self.dir),
               "PYTHON": str(self.python), "LC_ALL": "C"}
        return subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)


@pytest.fixture
def box(tmp_path):
    return Sandbox(tmp_path)


def error_lines(res) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("error:")]


def test_script_is_executable_bash():
    assert os.access(SCRIPT, os.X_OK)
    assert subprocess.run([BASH, "-n", str(SCRIPT)]).returncode == 0


def test_dir_present_does_nothing(box):
    box.dir.mkdir()
    box.apt_get()
    box.uid(0)
    box.fake_python()
    res = box.run()
    assert res.returncode == 0, res.stderr
    assert not box.apt_log.exists() and not box.py_log.exists()
    assert res.stdout == "" and len(res.stderr.splitlines()) <= 1


def test_dir_missing_installs_the_debian_package_as_root(box):
    box.apt_get()
    box.uid(0)
    box.fake_python()
    fake(box.bin / "sudo", f'echo "$*" >> "{box.sudo_log}"; exit 1')
    res = box.run()
    assert res.returncode == 0, res.stderr
    calls = box.apt_log.read_text().splitlines()
    assert calls[0].startswith("update")
    assert any("install" in c.split() and "dataset-fashion-mnist" in c.split() for c in calls), calls
    assert box.dir.is_dir()
    assert not box.sudo_log.exists() and not box.py_log.exists()


def test_dir_missing_not_root_goes_through_sudo(box):
    box.apt_get()
    box.uid(1000)
    box.fake_python()
    fake(box.bin / "sudo", f'echo "$*" >> "{box.sudo_log}"\n[ "$1" = -n ] && shift\nexec "$@"')
    res = box.run()
    assert res.returncode == 0, res.stderr
    sudo_calls = box.sudo_log.read_text().splitlines()
    assert sudo_calls[0] == "-n apt-get update -q"
    assert "dataset-fashion-mnist" in sudo_calls[1] and "DEBIAN_FRONTEND=noninteractive" in sudo_calls[1]
    assert not box.py_log.exists()


def test_no_apt_get_downloads_through_patchbench(box):
    box.fake_python()
    res = box.run(system_path=False)
    assert res.returncode == 0, res.stderr
    assert not box.apt_log.exists()
    call = box.py_log.read_text()
    assert call.startswith("-c ") and "from patchbench.data import load_split" in call and LOAD_CODE in call


def test_everything_failing_is_one_error_line_and_exit_2(box):
    box.fake_python(rc=1, stderr="Traceback (most recent call last):\n  boom\nPatchbenchError: no network")
    res = box.run(system_path=False)
    assert res.returncode == 2
    assert box.py_log.exists()
    errors = error_lines(res)
    assert len(errors) == 1, res.stderr
    assert str(box.dir) in errors[0] and "dataset-fashion-mnist" in errors[0] and "PATCHBENCH_DATA" in errors[0]
    assert "PatchbenchError: no network" in errors[0]
    assert "Traceback" not in res.stderr


def test_missing_python_is_a_clear_error(box):
    res = box.run(system_path=False)  # box.python was never written
    assert res.returncode == 2
    errors = error_lines(res)
    assert len(errors) == 1, res.stderr
    assert errors[0].startswith(f"error: Fashion-MNIST not found in {box.dir} and loading it with {box.python} failed (")
    assert "No such file or directory" in errors[0] and "dataset-fashion-mnist" in errors[0]


def test_failing_apt_get_falls_through_to_the_download(box):
    box.apt_get(rc=100)
    box.uid(0)
    box.fake_python()
    res = box.run()
    assert res.returncode == 0, res.stderr
    assert box.apt_log.exists() and LOAD_CODE in box.py_log.read_text()
    assert not error_lines(res)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_runs_the_script_before_patchbench():
    out = subprocess.run(["make", "-n", "-C", str(REPO), "demo", "demo-tomm"], capture_output=True, text=True,
                         timeout=30).stdout.splitlines()
    for cmd in ("reproduce icaart2022", "reproduce tomm2022"):
        i = next(n for n, line in enumerate(out) if cmd in line)
        assert "ensure-dataset.sh" in out[i - 1] and "PYTHON=" in out[i - 1]
