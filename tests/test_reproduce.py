"""`csm reproduce --quick` end to end: every experiment runs, every claim agrees, files exist."""

import json

import pytest

from csm.cli import main


@pytest.mark.slow
def test_reproduce_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["reproduce", "--quick", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    report = (out / "report.md").read_text()
    data = json.loads((out / "results.json").read_text())
    names = {e["name"] for e in data["experiments"]}
    assert {"relu-critical-points", "relu-stable-sets", "relu-manifold", "relu-measure",
            "relu-transitions", "leaky_relu", "phase_retrieval", "matrix_recovery"} <= names
    assert data["agrees"] is True
    for e in data["experiments"]:
        assert e["claims"], e["name"]
        for fig in e["figures"].values():
            assert (out / fig).exists() or __import__("os").path.exists(fig)
    assert "claims agree" in report and "![" in report
    assert (out / "figures" / "relu_transitions.graphml").exists()
    import numpy as np

    with np.load(out / "data" / "relu_stable_set-step0.1.npz") as z:  # per-run arrays
        assert z["status"].shape == (1000,)


def test_reproduce_reports_a_failing_experiment(tmp_path):
    import csm
    from csm.experiments import run_experiments, write_report

    def boom(config):
        raise RuntimeError("deliberate")

    def fine(config):
        return csm.ExperimentResult("fine", "ref", [csm.Claim("1 = 1", "ref", "1", True)])

    exps = [csm.Experiment("boom", "ref", "fails", boom), csm.Experiment("fine", "ref", "ok", fine)]
    rep = run_experiments(csm.ExperimentConfig(out_dir=tmp_path), experiments=exps)
    assert [r.agrees for r in rep.results] == [False, True]
    assert "RuntimeError: deliberate" in rep.results[0].claims[0].measured
    path = write_report(rep)
    assert "**NO**" in path.read_text()
