"""The MI estimation task and benchmark: short runs move toward the truth, the sweep writes its files."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_lightning import Trainer, seed_everything
from pytorch_lightning.loggers import Logger

from bench.mi import mi as bench
from bench.mi.mi import ESTIMATORS, Setting, ema, stage_statistics, train_ensemble, train_lean
from pdrl.data.gaussians import GaussianMIDataModule, statistical_floor
from pdrl.fit import main as fit_main
from pdrl.metrics import pointwise_errors
from pdrl.tasks.mi_estimation import CRITICS, MIEstimation

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = {"mi_levels": [2.0], "hidden_dims": [64], "embed_dim": 16, "lr": 1e-3, "heldout_batches": 1}


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    torch.set_num_threads(1)


def test_pointwise_errors_of_the_truth_and_of_a_shifted_truth():
    truth = torch.randn(2, 6, 6, generator=torch.Generator().manual_seed(0))
    exact = pointwise_errors(truth, truth)
    assert exact["joint_rmse"] == 0 and exact["marginal_rmse"] == 0
    assert exact["joint_corr"] == pytest.approx(1.0) and exact["marginal_corr"] == pytest.approx(1.0)
    shifted = pointwise_errors(truth + 3.0, truth)
    assert shifted["marginal_bias"] == pytest.approx(3.0) and shifted["marginal_error_std"] == pytest.approx(
        0, abs=1e-6
    )


@pytest.mark.parametrize("estimator", ["cpc", "drfc", "smile_tau1", "mice"])
def test_short_runs_move_toward_the_true_mi(estimator):
    setting = Setting(steps_per_level=300, **SMALL)
    result = train_lean(setting.model(ESTIMATORS[estimator]), setting.stream())
    start_error = abs(result.estimates[:20].mean() - 2.0)
    end_error = abs(result.estimates[-50:].mean() - 2.0)
    assert end_error < 0.6 * start_error
    assert result.pointwise[-1]["joint_corr"] > 0.5  # the learned log-PD follows the closed form


def test_joint_critic_learns_too():
    setting = Setting(critic="concat", steps_per_level=300, **SMALL)
    result = train_lean(setting.model(ESTIMATORS["smile_tau1"]), setting.stream())
    assert abs(result.estimates[-50:].mean() - 2.0) < 0.6 * abs(result.estimates[:20].mean() - 2.0)


def test_ensemble_follows_the_trajectories_of_separate_runs():
    setting = Setting(mi_levels=[2.0, 4.0], steps_per_level=30, hidden_dims=[32], embed_dim=8, heldout_batches=1)
    names = ["pcc", "mine", "mice"]  # imbalanced PC, a stateful objective, a spectrally normalised critic
    together = train_ensemble([setting.model(ESTIMATORS[name]) for name in names], setting.stream())
    for name, result in zip(names, together, strict=True):
        alone = train_lean(setting.model(ESTIMATORS[name]), setting.stream())
        np.testing.assert_allclose(result.estimates, alone.estimates, rtol=1e-3, atol=1e-3)
        assert result.pointwise[-1]["joint_corr"] == pytest.approx(alone.pointwise[-1]["joint_corr"], abs=1e-3)


def test_stage_statistics_and_ema():
    rng = np.random.default_rng(0)
    estimates = np.concatenate([np.full(50, 9.0), 2.5 + 0.1 * rng.standard_normal(50)])
    (row,) = stage_statistics(estimates, [2.0], 100, 50, 20, 64)
    assert row["bias"] == pytest.approx(0.5, abs=0.05)
    assert row["mse"] == pytest.approx(row["bias"] ** 2 + row["variance"])
    assert row["floor"] == statistical_floor(2.0, 20, 64)
    assert row["mse_over_floor"] == pytest.approx(row["mse"] / row["floor"])
    np.testing.assert_allclose(ema(np.full(10, 3.0)), 3.0)


@pytest.mark.parametrize(
    "config", ["mi_gaussian", "mi_cubic", "mi_gaussian_joint", "mi_correlated", "mi_correlated_paper"]
)
def test_configs_fit_end_to_end(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    allocator_calls = []
    monkeypatch.setattr("pdrl.fit.keep_freed_memory", lambda: allocator_calls.append(True))
    cli = fit_main(
        [
            "--config",
            str(CONFIGS / f"{config}.yaml"),
            "--data.init_args.steps_per_level",
            "5",
            "--data.init_args.mi_levels",
            "[2.0, 4.0]",
            "--model.init_args.hidden_dims",
            "[16]",
        ]
    )
    assert cli.trainer.global_step == 10
    assert allocator_calls == [True]  # the joint critic's >32 MiB activations stay in the heap
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["train/mi"]) and "pointwise/joint_corr" in metrics


def test_sweep_writes_tables_figures_and_runs(tmp_path):
    arguments = ["--steps-per-level", "20", "--mi-levels", "2", "4", "--hidden-dims", "16", "--embed-dim", "8"]
    rows = bench.main(
        [
            "sweep",
            "--estimators",
            "cpc",
            "pcc",
            "--tasks",
            "gaussian",
            "cubic",
            "--window",
            "10",
            "--out",
            str(tmp_path),
        ]
        + arguments
    )
    assert len(rows) == 2 * 2 * 2  # tasks x estimators x levels
    figures = ["figure_gaussian_separable_16_e8.png", "figure_cubic_separable_16_e8.png"]
    for name in ("mi_table.csv", "mi_table.md", *figures):
        assert (tmp_path / name).stat().st_size > 0
    assert len(list((tmp_path / "runs").glob("*.npz"))) == 4
    with open(tmp_path / "mi_table.csv") as handle:
        table = list(csv.DictReader(handle))
    assert {row["estimator"] for row in table} == {"cpc", "pcc"} and all(float(row["floor"]) > 0 for row in table)
    assert "MSE / statistical floor" in (tmp_path / "mi_table.md").read_text()
    assert len(bench.main(["report", "--out", str(tmp_path), "--window", "5"])) == 8
    bench.main(
        [
            "sweep",
            "--estimators",
            "dv",
            "--tasks",
            "gaussian",
            "--engine",
            "lean",
            "--window",
            "10",
            "--out",
            str(tmp_path),
        ]
        + arguments
    )
    assert (tmp_path / "runs" / "gaussian__separable_16_e8__dv__s0.json").exists()
    other = tmp_path / "joint"
    bench.main(["sweep", "--estimators", "cpc", "--tasks", "gaussian", "--critic", "joint", "--window", "10",
                "--out", str(other), *arguments])  # fmt: skip
    combined = tmp_path / "combined"
    rows = bench.main(["report", "--out", str(combined), "--runs-from", str(tmp_path), str(other), "--window", "10"])
    assert {row["critic"] for row in rows} == {"separable_16_e8", "joint_16"}
    assert len(rows) == (2 * 2 + 1 + 1) * 2  # both folders' runs (5 + 1), once each, x 2 levels
    assert (combined / "figure_gaussian_joint_16.png").exists() and not (combined / "runs").exists()


def test_throughput_measures_three_loops_interleaved(tmp_path):
    out = tmp_path / "throughput.md"
    rows = bench.main(["throughput", "--steps", "20", "--rounds", "2", "--hidden-dims", "8", "--out", str(out)])
    assert len(rows) == 2 and all(row[loop] > 0 for row in rows for loop in ("plain", "lean", "lightning"))
    # the setup is timed (Trainer built to first batch), not extrapolated from the steady rate: never negative
    assert all(0 < row["lightning_setup_s"] < 60 for row in rows)
    text = out.read_text()
    assert "lean / plain" in text and "plain -> lean -> lightning" in text and "lean -> lightning -> plain" in text


class _MemoryLogger(Logger):
    """Keeps every ``log_metrics`` call: what a dashboard would receive."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:  # noqa: ANN001
        pass

    def log_metrics(self, metrics, step=None) -> None:  # noqa: ANN001
        self.records.append((step, dict(metrics)))


class _LogsEveryStep(MIEstimation):
    """The module as it was: ``self.log`` on every training step."""

    def loggers_write_this_step(self) -> bool:
        return True


def _fit_and_count_logs(module_class: type[MIEstimation]) -> tuple[_MemoryLogger, dict[str, float], int]:
    seed_everything(0)
    model = module_class(hidden_dims=[16], embed_dim=8)
    calls = []
    log = model.log
    model.log = lambda name, *args, **kwargs: (calls.append(name), log(name, *args, **kwargs))[1]
    logger = _MemoryLogger()
    data = GaussianMIDataModule(dim=20, batch_size=16, mi_levels=[2.0, 4.0], steps_per_level=6, heldout_batches=1)
    trainer = Trainer(
        max_epochs=1,
        logger=logger,
        log_every_n_steps=5,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, data)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    return logger, metrics, calls.count("train/mi")


def test_training_metrics_are_logged_only_on_the_steps_the_loggers_write():
    logger, metrics, mi_logs = _fit_and_count_logs(MIEstimation)
    every_step_logger, every_step_metrics, every_step_mi_logs = _fit_and_count_logs(_LogsEveryStep)
    assert (every_step_mi_logs, mi_logs) == (12, 3)  # steps 5 and 10 (log_every_n_steps 5) and the last, 12
    assert [step for step, _ in logger.records] == [step for step, _ in every_step_logger.records]
    for (_, record), (_, every_step_record) in zip(logger.records, every_step_logger.records, strict=True):
        assert record == pytest.approx(every_step_record)  # the dashboard is unchanged
    assert any("train/mi_error" in record for _, record in logger.records)
    assert metrics == pytest.approx(every_step_metrics)  # callback_metrics hold the last step's values


def test_bad_input_raises_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="critic"):
        MIEstimation(critic_name="bilinear")
    with pytest.raises(ValueError, match="Unknown objective"):
        MIEstimation(objective="nce")
    with pytest.raises(SystemExit, match="Unknown estimator"):
        bench.main(["sweep", "--estimators", "infomax", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="one architecture"):
        models = [Setting(critic=critic, hidden_dims=[8]).model(ESTIMATORS["cpc"]) for critic in CRITICS]
        train_ensemble(models, Setting(hidden_dims=[8]).stream())
    with pytest.raises(SystemExit):
        bench.main(["sweep", "--critic", "bilinear", "--out", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="No runs"):
        bench.main(["report", "--out", str(tmp_path / "empty")])
