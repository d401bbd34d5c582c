"""`csm reproduce --quick` end to end, and the report machinery on its own.

End to end: every experiment runs, every claim agrees and is machine-readable (a numeric
``measured`` dict, an ``expected`` dict, a ``criterion``), every "0/n into saddles" claim has
its positive control beside it, provenance is recorded, and every figure link in report.md
opens relative to report.md -- for a relative ``--out`` (the README's) as for an absolute one.
"""

import json
import os
import re

import numpy as np
import pytest

import csm
from csm.cli import main


def _check_links(out, report):
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert links
    for link in links:
        assert not os.path.isabs(link), link
        assert (out / link).is_file(), link
    return links


def _is_number_or_list(v):
    if isinstance(v, list):
        return all(_is_number_or_list(x) for x in v)
    return v is None or isinstance(v, (bool, int, float)) or v in ("nan", "inf", "-inf")


@pytest.mark.slow
def test_reproduce_quick_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["reproduce", "--quick", "--out", "report"])  # relative, as in the README
    text = capsys.readouterr().out
    out = tmp_path / "report"
    assert code == 0, text
    report = (out / "report.md").read_text()
    data = json.loads((out / "results.json").read_text())
    names = {e["name"] for e in data["experiments"]}
    assert {"relu-critical-points", "relu-stable-sets", "relu-manifold", "relu-measure",
            "relu-transitions", "leaky_relu", "phase_retrieval", "matrix_recovery"} <= names
    assert data["agrees"] is True, [
        (e["name"], c["statement"], c["measured"]) for e in data["experiments"]
        for c in e["claims"] if not c["agrees"]]
    for e in data["experiments"]:
        assert e["claims"], e["name"]
        assert e["seconds"] > 0 and e["seeds"], e["name"]
        statements = [c["statement"] for c in e["claims"]]
        for c in e["claims"]:
            assert isinstance(c["measured"], dict) and c["measured"], c["statement"]
            assert all(_is_number_or_list(v) for v in c["measured"].values()), c
            assert isinstance(c["expected"], dict) and c["criterion"].strip(), c["statement"]
        # every "does not converge to a saddle" claim has a positive control beside it
        n_zero = sum("converge to a saddle" in s or "converge to saddles" in s
                     or "converge into S" in s for s in statements)
        n_pc = sum(s.startswith("positive control") for s in statements)
        assert n_pc >= n_zero, e["name"]
        for fig in e["figures"].values():
            assert not os.path.isabs(fig) and (out / fig).is_file(), fig
    prov = data["provenance"]
    for key in ("csm", "numpy", "scipy", "python", "git_commit", "command", "seed"):
        assert key in prov, key
    assert prov["command"].strip()  # this process's command line (pytest here)
    assert "## Provenance" in report and "## Where the time goes" in report
    assert "claims agree" in report
    _check_links(out, report)
    assert (out / "figures" / "relu_transitions.graphml").exists()
    with np.load(out / "data" / "relu_stable_set-step0.1.npz") as z:  # per-run arrays
        assert z["status"].shape == (1000,)
    # the links also open from another working directory
    monkeypatch.chdir(tmp_path.parent)
    _check_links(out, report)


def test_reproduce_reports_a_failing_experiment(tmp_path):
    from csm.experiments import run_experiments, write_report

    def boom(config):
        raise RuntimeError("deliberate")

    def fine(config):
        return csm.ExperimentResult("fine", "ref", [csm.Claim(
            "1 = 1", "ref", measured={"lhs": 1}, expected={"rhs": 1}, criterion="lhs == rhs",
            agrees=True)])

    exps = [csm.Experiment("boom", "ref", "fails", boom), csm.Experiment("fine", "ref", "ok", fine)]
    rep = run_experiments(csm.ExperimentConfig(out_dir=tmp_path), experiments=exps)
    assert [r.agrees for r in rep.results] == [False, True]
    assert "RuntimeError: deliberate" in rep.results[0].data["error"]
    assert rep.results[0].claims[0].measured == {"raised": 1}
    path = write_report(rep)
    text = path.read_text()
    assert "**NO**" in text and "RuntimeError: deliberate" in text
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["claims"] == 2 and data["claims_agreeing"] == 1


def test_claim_is_machine_readable_and_validated():
    c = csm.Claim("x", "ref", measured={"a": np.float64(1.5), "b": np.int64(2), "c": [1, 2.0]},
                  expected={"a": 1.5}, criterion="|a - 1.5| <= 1e-9", agrees=np.bool_(True))
    d = c.to_dict()
    assert d["measured"] == {"a": 1.5, "b": 2, "c": [1, 2.0]} and d["agrees"] is True
    json.dumps(d, allow_nan=False)
    with pytest.raises(TypeError, match="measured"):
        csm.Claim("x", "ref", "free text", {}, "rule", True)
    with pytest.raises(TypeError, match="measured"):
        csm.Claim("x", "ref", {"a": "text"}, {}, "rule", True)
    with pytest.raises(TypeError, match="criterion"):
        csm.Claim("x", "ref", {"a": 1}, {}, "", True)


def test_figure_links_are_relative_to_the_report(tmp_path, monkeypatch):
    from csm.experiments import run_experiments, write_report
    from csm.plotting import figure_path, new_figure, save_figure

    def plot(config):
        fig = new_figure()
        fig.add_subplot(111).plot([0, 1], [0, 1])
        path = save_figure(fig, figure_path(config.out_dir, "line"))
        return csm.ExperimentResult("plot", "ref", [csm.Claim(
            "1 = 1", "ref", {"lhs": 1}, {"rhs": 1}, "lhs == rhs", True)], figures={"line": path})

    exps = [csm.Experiment("plot", "ref", "a figure", plot)]
    monkeypatch.chdir(tmp_path)
    for out in ("rel/out", str(tmp_path / "abs")):
        rep = run_experiments(csm.ExperimentConfig(out_dir=out), experiments=exps)
        text = write_report(rep).read_text()
        base = tmp_path / out
        assert _check_links(base, text) == ["figures/line.png"]
        assert rep.results[0].figures["line"] == "figures/line.png"


def test_provenance_records_versions_commit_and_command():
    from csm.experiments import provenance

    cfg = csm.ExperimentConfig(seed=3, command=["/usr/bin/csm", "reproduce", "--out", "a b"])
    prov = provenance(cfg)
    assert prov["command"] == "csm reproduce --out 'a b'" and prov["seed"] == 3
    assert prov["csm"] == csm.__version__ and prov["numpy"] == np.__version__
    assert prov["git_commit"] == "unknown" or re.fullmatch(r"[0-9a-f]{40}", prov["git_commit"])


def test_writes_do_not_follow_a_planted_symlink(tmp_path):
    from csm.experiments import run_experiments, write_report

    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (out / "report.md").symlink_to(victim)
    rep = run_experiments(csm.ExperimentConfig(out_dir=out), experiments=[])
    write_report(rep)
    assert victim.read_text() == "keep"
    assert not (out / "report.md").is_symlink()
