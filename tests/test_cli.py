"""The `csm` command: outputs, --json, and exit codes (0 ok, 1 check failed or a plugin failed,
2 bad input)."""

import json
import subprocess
import sys

import pytest

import csm
from csm.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json(capsys):
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0
    data = json.loads(out)
    assert "relu" in data["problems"] and "description" in data["problems"]["relu"]


def test_list_text(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "problems:" in out and "relu" in out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["frobnicate"], "invalid choice"),
        (["check"], "the following arguments are required: problem"),
        (["check", "no_such_problem"], "unknown problem 'no_such_problem'"),
        (["check", "relu", "-p", "N"], "`-p` takes key=value, got 'N'"),
        (["check", "relu", "-p", "bogus=1"], "no parameter(s) ['bogus']"),
        (["manifold", "relu", "--point", "nowhere"], "`--point` 'nowhere' is not a known critical point"),
        (["manifold", "relu"], "`csm manifold` needs `--point LABEL`"),
        (["stable-set", "relu", "--step", "-1", "-n", "10"], "argument --step"),
        (["reproduce", "--only", "no_such_experiment", "--out", "{tmp}"], "unknown experiment"),
        (["stable-set", "relu", "--workers", "2", "--dask", "tcp://x:1"], "not allowed with argument"),
        (["manifold", "relu", "--point", "zigzag-n1-inactive", "--step", "0"], "argument --step"),
        (["reproduce", "--only", "relu-critical-points", "--out", "/proc/csm-no-such/x"], "csm: error:"),
        (["stable-set", "relu", "-n", "0", "--step", "0.1"], "argument -n"),
    ],
)
def test_errors_exit_2_with_one_line(capsys, tmp_path, argv, needle):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2, (code, out, err)
    assert needle in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_check_exit_codes(capsys, monkeypatch):
    # a passing problem
    code, out, _ = run(capsys, "check", "phase_retrieval", "-p", "loss='population'", "-p", "n=4")
    assert code == 0 and "PASSED" in out
    # a failing conformance check exits 1
    class Broken(csm.ProblemBase):
        name, dim = "broken", 2

        def _loss(self, X):
            return (X**2).sum(1)

        def _gradient(self, X):
            return X  # wrong by a factor 2

    monkeypatch.setattr(csm.plugin.manager, "get_problem", lambda name, **kw: Broken())
    code, out, _ = run(capsys, "check", "broken", "--json")
    assert code == 1 and json.loads(out)["passed"] is False


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "csm.cli", "list"], capture_output=True, text=True)
    assert out.returncode == 0 and "relu" in out.stdout


def test_manifold_command(capsys):
    code, out, _ = run(capsys, "manifold", "phase_retrieval", "-p", "loss='population'", "-p",
                       "n=4", "--point", "saddle-sphere-1+", "--step", "0.05", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["manifold"]["dim_u"] == 1 and data["manifold"]["dim_cs"] == 3
    assert data["verification"]["passed"] is True


def test_stable_set_command_with_checkpoint(capsys, tmp_path):
    argv = ["stable-set", "phase_retrieval", "-p", "loss='population'", "-p", "n=4", "-n", "60",
            "--step", "0.01", "--max-steps", "3000", "--tol", "1e-7", "--checkpoint",
            str(tmp_path / "ckpt"), "--json"]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    first = json.loads(out)
    assert first["n"] == 60 and first["saddle_count"] == 0
    code, out, _ = run(capsys, *argv)  # resumed entirely from the checkpoint
    again = json.loads(out)
    assert again["chunks_loaded"] == again["chunks"] and again["counts"] == first["counts"]


# ---------------------------------------------------------------------------------------
# failing plugins: one line on stderr and exit 1 (--debug: the traceback); the rest keeps working
# ---------------------------------------------------------------------------------------

FAILING = """
import numpy as np
import csm

class Fragile(csm.ProblemBase):
    name, dim = "fragile", 2
    def __init__(self, n=1):
        if n == 0:
            raise RuntimeError("no workspace for n=0")
        self.n = n
    def _loss(self, X):
        return np.sum(X**2, axis=1) / 2
    def _gradient(self, X):
        return X * (1 / (self.n - 1))  # n = 1: ZeroDivisionError (Python ints)

@csm.hookimpl
def csm_problems():
    return [csm.ProblemFactory("fragile", "a plugin whose code raises", Fragile)]
"""


def _one_line_error(err):
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_misspelled_hook_does_not_break_list(capsys, fake_dist):
    fake_dist("csm_test_cli_typo", {"typoplug": "csm_test_cli_typo"},
              {"csm_test_cli_typo": "import csm\n@csm.hookimpl\ndef csm_problem():\n    return []\n"})
    with pytest.warns(RuntimeWarning, match="typoplug"):
        code, out, _ = run(capsys, "list", "--json")
    assert code == 0
    data = json.loads(out)
    assert "relu" in data["problems"]
    assert any("'typoplug'" in e and "unknown hook" in e for e in data["plugin_errors"])
    code, out, _ = run(capsys, "list")  # text output too (the warning went to stderr once)
    assert code == 0 and "relu" in out


def test_plugin_exiting_at_import_does_not_end_csm(capsys, fake_dist):
    fake_dist("csm_test_cli_exit", {"exitplug": "csm_test_cli_exit"},
              {"csm_test_cli_exit": "import sys\nsys.exit(3)\n"})
    with pytest.warns(RuntimeWarning, match="exitplug"):
        code, out, _ = run(capsys, "list", "--json")
    assert code == 0
    assert any("'exitplug'" in e and "SystemExit: 3" in e for e in json.loads(out)["plugin_errors"])


def test_failing_plugin_code_exits_1_with_one_line(capsys, fake_dist):
    fake_dist("csm_test_cli_fragile", {"fragileplug": "csm_test_cli_fragile"},
              {"csm_test_cli_fragile": FAILING})
    # the constructor raises RuntimeError
    code, _, err = run(capsys, "check", "fragile", "-p", "n=0")
    assert code == 1
    assert "'fragileplug'" in _one_line_error(err) and "'fragile'" in err
    assert "RuntimeError: no workspace for n=0" in err
    # the gradient raises ZeroDivisionError inside `csm check`
    code, _, err = run(capsys, "check", "fragile", "-p", "n=1")
    assert code == 1
    assert "'fragileplug'" in _one_line_error(err) and "'fragile'" in err
    assert "ZeroDivisionError" in err
    # bad parameters stay exit 2
    code, _, err = run(capsys, "check", "fragile", "-p", "m=1")
    assert code == 2 and "no parameter(s) ['m']" in _one_line_error(err)
    # --debug shows the original exception
    with pytest.raises(ZeroDivisionError):
        main(["check", "fragile", "-p", "n=1", "--debug"])
    with pytest.raises(csm.PluginError):
        main(["check", "fragile", "-p", "n=0", "--debug"])


def test_a_csm_bug_still_shows_its_traceback(monkeypatch, fresh_plugins):
    def bug(name, **kw):
        raise ZeroDivisionError("inside csm, not a plugin")

    monkeypatch.setattr(csm.plugin.manager, "get_problem", bug)
    with pytest.raises(ZeroDivisionError):
        main(["check", "relu"])


# -- CLI conventions (issue 15: items 3, 13, 14, 16) --------------------------------------


def test_version_and_top_level_json(capsys):
    import csm as _csm

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and _csm.__version__ in capsys.readouterr().out
    assert main(["--json", "list"]) == 0
    assert "problems" in json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("argv,flag", [
    (["stable-set", "relu", "--workers", "0"], "--workers"),
    (["stable-set", "relu", "--workers", "-3"], "--workers"),
    (["manifold", "relu", "--find", "--n-verify", "0"], "--n-verify"),
    (["stable-set", "relu", "--step", "geometric:0.05"], "--step"),
    (["stable-set", "relu", "-n", "0"], "-n"),
])
def test_bad_numbers_are_usage_errors_naming_the_flag(argv, flag, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err


def test_schedule_momentum_and_quiet_output(capsys):
    assert main(["stable-set", "relu", "-p", "N=2", "-n", "4", "--step", "geometric:0.05,0.999",
                 "--momentum", "0.5", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "geometric" in out.out and "momentum 0.5" in out.out and "\r" not in out.err


def test_broken_pipe_is_not_an_error():
    import subprocess
    import sys as _sys

    code = ("import sys; from csm.cli import main; sys.exit(main(['find', 'relu', '-p', 'N=2', "
            "'--n-starts', '50', '--show', '200']))")
    proc = subprocess.run(f"{_sys.executable} -c \"{code}\" | head -1", shell=True,
                          capture_output=True, text=True)
    assert "Broken pipe" not in proc.stderr and "Traceback" not in proc.stderr


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["stable-set", "--help"])
    assert "default: 10000" in capsys.readouterr().out
