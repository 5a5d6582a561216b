"""MI benchmark round 2: named critics, stacked joint critics, seeds, provenance, findings, lean Adam."""

import csv
import json
import math
import shlex

import numpy as np
import pytest
import torch
from torch import nn

from bench.mi import mi as bench
from bench.mi.mi_settings import ESTIMATORS, Setting, critic_label
from bench.mi.mi_writeup import findings
from pdrl.tasks.mi_estimation import lean_adam

TINY = ["--steps-per-level", "15", "--mi-levels", "2", "4", "--hidden-dims", "8", "--embed-dim", "4"]


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    torch.set_num_threads(1)


def test_named_critics_are_the_reference_architectures():
    def linear_widths(module):
        return [layer.out_features for layer in module.modules() if isinstance(layer, nn.Linear)]

    reference = Setting.from_preset("separable").model(ESTIMATORS["cpc"])
    assert linear_widths(reference.encoder_x) == [256, 256, 256, 32]  # SMILE's mlp(..., layers=2)
    assert sum(p.numel() for p in reference.parameters()) == 290_368  # both branches, as in PAPERS.md
    shallow = Setting.from_preset("separable_2h").model(ESTIMATORS["cpc"])
    assert linear_widths(shallow.encoder_x) == [256, 256, 32]
    joint = Setting.from_preset("joint")
    assert (joint.critic, joint.hidden_dims, joint.batch_size, joint.lr) == ("concat", [512, 512], 128, 1e-3)
    assert Setting().critic_label == "separable"
    assert critic_label("separable", [256, 256], 32) == "separable_2h"  # old runs are labelled by architecture
    assert critic_label("concat", [128, 128], 32) == "joint_128-128"


def test_stacked_joint_critics_follow_the_trajectories_of_separate_runs():
    setting = Setting(critic="concat", hidden_dims=[16, 8], mi_levels=[2.0, 4.0], steps_per_level=25, heldout_batches=1)
    names = ["pcc", "drfc", "mice"]  # mice: spectrally normalised last layer
    together = bench.train_ensemble([setting.model(ESTIMATORS[name]) for name in names], setting.stream())
    for name, result in zip(names, together, strict=True):
        alone = bench.train_lean(setting.model(ESTIMATORS[name]), setting.stream())
        np.testing.assert_allclose(result.estimates, alone.estimates, rtol=1e-3, atol=1e-3)
        assert result.pointwise[-1]["joint_rmse"] == pytest.approx(alone.pointwise[-1]["joint_rmse"], rel=1e-2)


def test_seeds_give_mean_and_std_and_stored_commands_rerun_their_engine(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    arguments = ["sweep", "--estimators", "cpc", "smile_tau1", "--tasks", "gaussian", "--engine", "lean"]
    bench.main([*arguments, "--seeds", "0", "1", "--window", "10", "--out", str(first), *TINY])
    runs = sorted((first / "runs").glob("*.json"))
    assert len(runs) == 4
    with open(first / "mi_table_mean.csv") as handle:
        table = list(csv.DictReader(handle))
    assert {row["seeds"] for row in table} == {"2"} and all(float(row["mse_std"]) > 0 for row in table)
    text = (first / "mi_table.md").read_text()
    assert " ± " in text and "(2 seeds)" not in text and "cpc (2)" in text
    meta = json.loads(runs[0].read_text())
    assert meta["engine"] == "lean" and "--engine lean" in meta["command"]
    words = shlex.split(meta["command"].replace(str(first), str(second)))
    assert words[:3] == ["python", "-m", "bench.mi"]
    bench.main(words[3:])
    again = json.loads((second / "runs" / runs[0].name).read_text())
    assert again["engine"] == "lean" and again["setting"] == meta["setting"]
    np.testing.assert_array_equal(
        np.load(runs[0].with_suffix(".npz"))["estimates"],
        np.load((second / "runs" / runs[0].name).with_suffix(".npz"))["estimates"],
    )


def test_findings_name_the_critic_and_say_when_a_claim_flips():
    def row(critic, estimator, mi, bias, variance, floor=0.1):
        mse = bias**2 + variance
        entry = {"task": "gaussian", "critic": critic, "data": "standard", "estimator": estimator, "true_mi": mi}
        entry.update(seeds=3, floor=floor, bias=bias, variance=variance, mse=mse, mse_over_floor=mse / floor)
        return entry | {f"{key}_std": 0.01 for key in ("bias", "variance", "mse", "mse_over_floor")}

    aggregated = [
        row("separable", "pcc", 6.0, -1.0, 0.05),
        row("separable", "smile_tau1", 6.0, -0.1, 0.12),
        row("separable_2h", "pcc", 6.0, -0.1, 0.05),
        row("separable_2h", "smile_tau1", 6.0, -0.1, 0.12),
    ]
    text = "\n".join(findings(aggregated, runs=[]))
    assert "smile_tau1: 1.30 ± 0.01x" in text and "pcc: 0.60 ± 0.01x" in text  # MSE / floor of the best
    flip = "separable: smile_tau1, separable_2h: pcc (**flips between critics**)"
    assert f"gaussian, MI 6: best estimator {flip}" in text
    assert f"gaussian: lowest variance among the low-bias estimators from MI 6: {flip}" in text
    assert (
        "**gaussian, separable_2h critic, standard data**: the best estimator is within 1.5x of the floor at MI 6"
        in text
    )
    assert text.count("off the scale (below 0 or above 2x the true MI): none.") == 2


def test_findings_name_estimates_off_the_scale_though_finite():
    def row(estimator, mi, bias):
        entry = {"task": "gaussian", "critic": "separable_2h", "data": "standard", "estimator": estimator}
        entry.update(true_mi=mi, seeds=1, floor=0.1, bias=bias, variance=1.0, mse=bias**2 + 1.0)
        return entry | {"mse_over_floor": entry["mse"] / 0.1, "mse_over_floor_std": math.nan}

    aggregated = [
        row("mice_blocked", 2.0, -5e12), row("mice_blocked", 4.0, -6e12),  # finite, meaningless
        row("mice", 2.0, -0.2), row("mice", 4.0, +4.5),  # above 2 x 4 nats only at MI 4
        row("cpc", 2.0, -2.0), row("cpc", 4.0, -3.9),  # estimate 0 and 0.1: still on the scale
    ]  # fmt: skip
    text = "\n".join(findings(aggregated, runs=[]))
    assert "off the scale (below 0 or above 2x the true MI): mice (from MI 4), mice_blocked (from MI 2)." in text


def test_lean_adam_is_adam_without_the_per_step_probe():
    torch.manual_seed(0)
    weights = [torch.randn(5, 3, requires_grad=True) for _ in range(2)]
    copies = [weight.detach().clone().requires_grad_() for weight in weights]
    lean, stock = lean_adam(weights, 1e-2), torch.optim.Adam(copies, lr=1e-2)
    assert lean.param_groups[0]["fused"] is True
    lean._accelerator_graph_capture_health_check()  # the skipped probe is a no-op on CPU parameters
    for _ in range(5):
        for group in (weights, copies):
            sum((w**2).sum() for w in group).backward()
        lean.step(), stock.step(), lean.zero_grad(), stock.zero_grad()
    for weight, copy in zip(weights, copies, strict=True):
        torch.testing.assert_close(weight, copy)
    assert "_accelerator_graph_capture_health_check" in vars(lean)


def test_compiled_ensemble_follows_the_eager_one_and_its_command_reruns_compiled(tmp_path, monkeypatch):
    compiled_modules = []
    real_compile = torch.compile

    def spy(module, *args, **kwargs):
        compiled_modules.append(type(module).__name__)
        return real_compile(module, *args, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    arguments = ["sweep", "--estimators", "cpc", "drfc", "--tasks", "gaussian", "--critic", "joint", "--window", "10"]
    arguments += [*TINY, "--hidden-dims", "16", "8", "--heldout-batches", "1"]
    bench.main([*arguments, "--out", str(tmp_path / "eager")])
    assert compiled_modules == []
    bench.main([*arguments, "--compile", "--out", str(tmp_path / "compiled")])
    assert compiled_modules == ["StackedConcatCritics"]
    for name in ("gaussian__joint_16-8__cpc__s0", "gaussian__joint_16-8__drfc__s0"):
        eager = np.load(tmp_path / "eager" / "runs" / f"{name}.npz")["estimates"]
        compiled = np.load(tmp_path / "compiled" / "runs" / f"{name}.npz")["estimates"]
        np.testing.assert_allclose(compiled, eager, rtol=1e-3, atol=1e-3)
        meta = json.loads((tmp_path / "compiled" / "runs" / f"{name}.json").read_text())
        assert meta["engine"] == "ensemble of 2, compiled" and "--engine ensemble --compile" in meta["command"]
    with pytest.raises(SystemExit, match="--compile compiles the ensemble"):
        bench.main([*arguments, "--compile", "--engine", "lean", "--out", str(tmp_path / "lean")])
