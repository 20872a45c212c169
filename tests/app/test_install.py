"""`make install` / `make uninstall` into a staging root (DESTDIR), as a booth would get them.

With DESTDIR set the installer skips what needs the real system: no `useradd`, no
`chown` to the service user, no `systemctl`, no `udevadm` (it says so, and this test
checks that it does). Everything else is the real thing: the virtual environment is
created and laneagent is pip-installed into it (PIP_ARGS=--no-deps: its dependencies
are this test environment's, so the test does not download them), every file lands in
its place with its mode, a second run keeps the edited config, and `systemd-analyze
verify` accepts the installed unit against the staged root.
"""

import os
import shutil
import stat
import subprocess
import sys
import sysconfig

import pytest

from tests.helpers import ROOT


def make(target, root, *extra):
    return subprocess.run(["make", "--no-print-directory", target, f"DESTDIR={root}", f"PY={sys.executable}",
                           *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.skipif(not shutil.which("make"), reason="make is not installed")
def test_install_then_uninstall_into_a_staging_root(tmp_path):
    root = tmp_path / "root"
    run = make("install", root, "PIP_ARGS=--no-deps")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "not creating the user" in run.stdout and "not running systemctl" in run.stdout

    opt, etc, var = root / "opt/laneagent", root / "etc/laneagent", root / "var/lib/laneagent"
    expected_modes = {
        opt: 0o755, opt / "README.md": 0o644, opt / "agent.example.toml": 0o644,
        etc: 0o750, etc / "agent.toml": 0o640, var: 0o700,
        root / "etc/systemd/system/laneagent.service": 0o644,
        root / "etc/udev/rules.d/99-laneagent-readers.rules": 0o644,
    }
    for path, want in expected_modes.items():
        assert path.exists(), path
        assert mode(path) == want, f"{path}: {mode(path):o}, expected {want:o}"
    assert (etc / "agent.toml").read_text() == (ROOT / "config/agent.example.toml").read_text()
    unit = root / "etc/systemd/system/laneagent.service"
    assert unit.read_text() == (ROOT / "systemd/laneagent.service").read_text()
    command = root / "usr/local/bin/laneagent"
    assert command.is_symlink() and os.readlink(command) == "/opt/laneagent/venv/bin/laneagent"

    # The program in the venv is ours and runs (dependencies from this environment).
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    where = subprocess.run([str(opt / "venv/bin/python"), "-c", "import agent; print(agent.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert where.stdout.strip().startswith(str(opt / "venv")), where.stderr
    helped = subprocess.run([str(opt / "venv/bin/laneagent"), "doctor", "--help"], capture_output=True, text=True,
                            env=env, cwd=tmp_path)
    assert helped.returncode == 0 and "example" in helped.stdout, helped.stderr
    # The demo runs from the installed package: its config template is installed with it
    # (pyproject's data-files), and nothing it imports comes from tests/ (not installed).
    demo = subprocess.run([str(opt / "venv/bin/python"), "-c", "import simulators.demo.lane, "
                           "simulators.demo.agentconfig as c; print(c.TEMPLATE)"], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert demo.stdout.strip() == str(opt / "venv/share/laneagent/agent.example.toml"), demo.stderr

    if shutil.which("systemd-analyze"):
        verify = subprocess.run(["systemd-analyze", "verify", "--recursive-errors=no", f"--root={root}",
                                 "/etc/systemd/system/laneagent.service"], capture_output=True, text=True)
        assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr

    # Again, after the technician edited the config: it is kept, never overwritten.
    (etc / "agent.toml").write_text("# edited for lane C3\n")
    (var / "agent.db").write_bytes(b"data")
    again = make("install", root, "PIP_ARGS=--no-deps")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "kept the existing /etc/laneagent/agent.toml" in again.stdout
    assert (etc / "agent.toml").read_text() == "# edited for lane C3\n"

    gone = make("uninstall", root)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    for path in (opt, command, root / "etc/systemd/system/laneagent.service",
                 root / "etc/udev/rules.d/99-laneagent-readers.rules"):
        assert not os.path.lexists(path), path
    assert (etc / "agent.toml").read_text() == "# edited for lane C3\n" and (var / "agent.db").read_bytes() == b"data"
    assert "kept /etc/laneagent" in gone.stdout


def test_install_refuses_a_relative_destdir():
    run = subprocess.run(["sh", "systemd/install.sh", "install"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "DESTDIR": "relative/root"})
    assert run.returncode == 1 and "DESTDIR must be an absolute path" in run.stderr


def test_udev_rule_examples_are_well_formed():
    rules = (ROOT / "systemd/99-laneagent-readers.rules").read_text().splitlines()
    examples = [line.lstrip("#") for line in rules if line.startswith("#SUBSYSTEM==")]
    assert len(examples) == 3  # FTDI, CP210x, ThingMagic
    for line in examples + [line for line in rules if line.startswith("SUBSYSTEM==")]:
        for part in (p.strip() for p in line.split(", ")):
            assert "==" in part or "+=" in part or "=" in part, part
        assert 'GROUP="dialout"' in line and 'MODE="0660"' in line
    assert all('SYMLINK+="rfid-' in line for line in examples)
    assert {'ATTRS{idVendor}=="0403"', 'ATTRS{idVendor}=="10c4"'} <= {p for e in examples for p in e.split(", ")}
