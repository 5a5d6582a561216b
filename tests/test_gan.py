"""25-Gaussians metrics on known inputs, and a few training steps of the GAN (vanilla and + MICE)."""

import math

import pytest
import torch

from pdrl.data.gaussian_grid import GaussianGridDataModule, grid_centres, sample_grid
from pdrl.fit import main as fit
from pdrl.metrics import grid_metrics
from pdrl.tasks.gan import GAN

STD = 0.05


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


def test_grid_centres():
    centres = grid_centres(5, 2.0)
    assert centres.shape == (25, 2)
    assert sorted(set(centres[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    with pytest.raises(ValueError, match="spacing must be > 0"):
        grid_centres(5, 0.0)


def test_samples_exactly_at_the_modes_cover_all_25_with_full_quality():
    centres = grid_centres()
    metrics = grid_metrics(centres.repeat(100, 1), centres, STD)
    assert metrics == {"modes_covered": 25.0, "high_quality_share": 1.0}


def test_a_collapsed_generator_covers_one_mode():
    centres = grid_centres()
    metrics = grid_metrics(centres[7].repeat(2500, 1), centres, STD)
    assert metrics == {"modes_covered": 1.0, "high_quality_share": 1.0}


def test_samples_between_modes_have_no_quality():
    centres = grid_centres()
    metrics = grid_metrics(centres + 1.0, centres, STD)  # the midpoints of the cells, sqrt(2) from any centre
    assert metrics == {"modes_covered": 0.0, "high_quality_share": 0.0}


def test_mode_needs_twenty_high_quality_samples():
    centres = grid_centres()
    nineteen = grid_metrics(centres[:1].repeat(19, 1), centres, STD)
    twenty = grid_metrics(centres[:1].repeat(20, 1), centres, STD)
    assert nineteen["modes_covered"] == 0.0 and twenty["modes_covered"] == 1.0


def test_real_samples_score_as_the_chi_square_law_says():
    centres = grid_centres()
    samples = sample_grid(20000, centres, STD, torch.Generator().manual_seed(0))
    metrics = grid_metrics(samples, centres, STD)
    assert metrics["modes_covered"] == 25.0
    # In 2-D, P(|noise| <= 3 std) = 1 - exp(-9 / 2).
    assert metrics["high_quality_share"] == pytest.approx(1 - math.exp(-4.5), abs=0.003)


def test_datamodule_stream_is_seeded():
    first = next(iter(GaussianGridDataModule(batch_size=8, seed=3).train_dataloader()))
    again = next(iter(GaussianGridDataModule(batch_size=8, seed=3).train_dataloader()))
    assert first.shape == (8, 2) and torch.equal(first, again)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"code": "gaussian"}, "code='gaussian'"),
        ({"generator_loss": "wasserstein"}, "generator_loss='wasserstein'"),
        ({"beta": -1.0}, "beta"),
        ({"beta": 1.0, "objective": "mutual"}, "Unknown objective 'mutual'"),
    ],
)
def test_bad_config_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GAN(**kwargs)


def test_mice_critic_is_spectrally_normalised_and_vanilla_has_none():
    assert not hasattr(GAN(beta=0.0), "critic")
    mice = GAN(beta=1.0, code="uniform", code_dim=3)
    last_layer = mice.sample_encoder[-1]
    assert hasattr(last_layer, "parametrizations")  # torch's spectral_norm parametrisation
    noise, code = mice.sample_latent(16)
    assert noise.shape == (16, 2) and code.shape == (16, 3) and code.abs().max() <= 1
    assert mice.mi_scores(mice.generate(noise, code), code).shape == (16, 16)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "extra"),
    [
        ("configs/gan_25gaussians.yaml", ["--model.generator_loss", "saturating"]),
        ("configs/gan_25gaussians_mice.yaml", []),
    ],
)
def test_config_trains_a_few_steps(tmp_path, config, extra):
    torch.manual_seed(0)
    cli = fit(
        [
            "--config", config, "--trainer.max_steps", "12", "--data.batches_per_epoch", "3",
            "--data.batch_size", "32", "--data.num_eval_samples", "200", "--model.hidden_dims", "[32, 32]",
            "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path), *extra,
        ]
    )  # fmt: skip
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.global_step == 12  # 6 iterations, 2 optimizer steps each
    assert 0 <= metrics["val/modes_covered"] <= 25 and 0 <= metrics["val/high_quality_share"] <= 1
    assert torch.isfinite(metrics["train/discriminator_loss"]) and torch.isfinite(metrics["train/generator_loss"])
    if "mice" in config:
        assert torch.isfinite(metrics["train/mi"])
    assert sorted(path.name for path in tmp_path.glob("*.png")) == ["samples_step12.png", "samples_step6.png"]
