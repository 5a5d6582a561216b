"""The MI benchmark's data: closed-form MI and log-PD (exact and Monte Carlo checks), the staircase stream."""

import math
from dataclasses import fields

import pytest
import torch
from jsonargparse import ArgumentParser
from torch.distributions import MultivariateNormal

from pdrl.data.gaussians import (
    GaussianMIDataModule,
    MIStaircase,
    StaircaseSettings,
    cube_root,
    log_pd,
    log_pd_matrix,
    mi_from_rho,
    rho_from_mi,
    sample_pairs,
    statistical_floor,
)


def test_rho_and_mi_are_inverse_and_floor_matches_the_papers_numbers():
    for mi in (2.0, 4.0, 6.0, 8.0, 10.0):
        assert mi_from_rho(rho_from_mi(mi, 20), 20) == pytest.approx(mi)
    floors = [statistical_floor(mi, 20, 64) for mi in (2.0, 4.0, 6.0, 8.0, 10.0)]
    assert floors == pytest.approx([0.057, 0.103, 0.141, 0.172, 0.198], abs=1e-3)  # PAPERS.md, n = 64


def test_log_pd_equals_the_log_density_ratio_of_the_joint_gaussian():
    dim, rho = 3, 0.6
    x, y = sample_pairs(7, dim, rho, generator=torch.Generator().manual_seed(0))
    covariance = torch.eye(2 * dim, dtype=torch.float64)
    covariance[:dim, dim:] = covariance[dim:, :dim] = rho * torch.eye(dim, dtype=torch.float64)
    joint = MultivariateNormal(torch.zeros(2 * dim, dtype=torch.float64), covariance)
    standard = MultivariateNormal(torch.zeros(dim, dtype=torch.float64), torch.eye(dim, dtype=torch.float64))
    x, y = x.double(), y.double()
    pairs = torch.cat([x[:, None, :].expand(7, 7, dim), y[None, :, :].expand(7, 7, dim)], dim=-1)
    expected = joint.log_prob(pairs) - standard.log_prob(x)[:, None] - standard.log_prob(y)[None, :]
    torch.testing.assert_close(log_pd_matrix(x, y, rho), expected)
    torch.testing.assert_close(log_pd(x, y, rho), expected.diagonal())


def test_cubic_log_pd_is_the_gaussian_one_at_the_cube_root():
    x, y = sample_pairs(50, 20, 0.7, "gaussian", generator=torch.Generator().manual_seed(1))
    x_cubic, y_cubic = sample_pairs(50, 20, 0.7, "cubic", generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x_cubic, x)
    torch.testing.assert_close(y_cubic, y.pow(3))
    torch.testing.assert_close(cube_root(y_cubic), y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_pd_matrix(x, y_cubic, 0.7, "cubic"), log_pd_matrix(x, y, 0.7), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("task", ["gaussian", "cubic"])
def test_monte_carlo_mean_and_variance_of_log_pd_under_the_joint(task):
    dim, mi, n = 20, 4.0, 200_000
    rho = rho_from_mi(mi, dim)
    x, y = sample_pairs(n, dim, rho, task, generator=torch.Generator().manual_seed(2))
    values = log_pd(x, y, rho, task)
    standard_error = math.sqrt(dim * rho**2 / n)
    assert abs(values.mean().item() - mi) < 4 * standard_error  # E_P[log r] = I(X; Y)
    assert values.var().item() == pytest.approx(dim * rho**2, rel=0.03)  # Var_P[log r] = d rho^2


def test_monte_carlo_ratio_averages_to_one_under_the_product_of_marginals():
    dim, mi, n = 20, 1.0, 200_000
    rho = rho_from_mi(mi, dim)
    generator = torch.Generator().manual_seed(3)
    x, y = sample_pairs(n, dim, rho, generator=generator)
    shuffled = y[torch.randperm(n, generator=generator)]
    assert log_pd(x, shuffled, rho).exp().mean().item() == pytest.approx(1.0, abs=0.03)  # E_Q[r] = 1


def test_within_batch_chain_keeps_the_marginals_and_correlates_neighbours():
    correlation, n = 0.4, 4000
    x, y = sample_pairs(n, 20, 0.8, batch_correlation=correlation, generator=torch.Generator().manual_seed(4))
    assert x.var().item() == pytest.approx(1.0, abs=0.05)
    neighbours = torch.corrcoef(torch.stack([x[1:].flatten(), x[:-1].flatten()]))[0, 1].item()
    assert neighbours == pytest.approx(correlation, abs=0.03)
    assert log_pd(x, y, 0.8).mean().item() == pytest.approx(mi_from_rho(0.8, 20), abs=0.1)  # MI of a pair unchanged


def test_staircase_stream_levels_heldout_and_determinism():
    settings = StaircaseSettings(
        dim=5, batch_size=8, mi_levels=[1.0, 3.0], steps_per_level=4, heldout_batches=2, seed=7
    )
    stream = MIStaircase(settings)
    batches = list(stream)
    assert len(batches) == settings.total_steps == 8
    assert [float(batch["mi"]) for batch in batches] == [1.0] * 4 + [3.0] * 4
    with_heldout = [index for index, batch in enumerate(batches) if "heldout_x" in batch]
    assert with_heldout == [3, 7]
    last = batches[7]
    assert last["heldout_x"].shape == (2, 8, 5) and last["heldout_log_pd"].shape == (2, 8, 8)
    torch.testing.assert_close(
        last["heldout_log_pd"][1], log_pd_matrix(last["heldout_x"][1], last["heldout_y"][1], float(last["rho"])).float()
    )
    torch.testing.assert_close(next(iter(stream))["x"], batches[0]["x"])


def test_uniform_batch_correlation_is_drawn_per_batch_within_its_range():
    stream = MIStaircase(
        StaircaseSettings(
            dim=3,
            batch_size=4,
            mi_levels=[1.0],
            steps_per_level=50,
            batch_correlation=0.5,
            batch_correlation_uniform=True,
            heldout_batches=0,
        )
    )
    values = torch.stack([batch["batch_correlation"] for batch in stream])
    assert values.min() >= 0.0 and values.max() <= 0.5 and values.unique().numel() == 50


def test_datamodule_yields_whole_batches():
    module = GaussianMIDataModule(dim=4, batch_size=6, mi_levels=[2.0], steps_per_level=3, task="cubic")
    batch = next(iter(module.train_dataloader()))
    assert batch["x"].shape == (6, 4) and batch["y"].shape == (6, 4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task": "square"}, "Unknown task"),
        ({"batch_correlation": 1.0}, "batch_correlation"),
        ({"mi_levels": []}, "mi_levels"),
        ({"batch_size": 1}, "batch_size"),
    ],
)
def test_bad_stream_arguments_raise_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StaircaseSettings(**kwargs)
    with pytest.raises(ValueError, match=message):  # the datamodule's config keys are the same settings
        GaussianMIDataModule(**kwargs)


def test_the_settings_are_a_frozen_copy():
    levels = [2.0, 4.0]
    settings = StaircaseSettings(mi_levels=levels, batch_correlation=0)
    levels.append(6.0)
    assert settings.mi_levels == (2.0, 4.0) and settings.batch_correlation == 0.0
    with pytest.raises(AttributeError):
        settings.dim = 3
    assert GaussianMIDataModule(dim=4, mi_levels=levels).stream.settings == StaircaseSettings(dim=4, mi_levels=levels)
    with pytest.raises(TypeError, match="unknown"):
        GaussianMIDataModule(unknown=1)


def test_the_datamodule_config_keys_are_the_settings_fields():
    """``python -m pdrl.fit`` reads the datamodule's keys through ``**settings`` from the dataclass: same names,
    types and defaults, so the shipped mi_*.yaml configs parse unchanged."""
    parser = ArgumentParser()
    parser.add_class_arguments(GaussianMIDataModule, "data")
    defaults = parser.get_defaults().data
    assert vars(defaults) == {field.name: field.default for field in fields(StaircaseSettings)}
