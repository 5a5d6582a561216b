"""A GAN on 2-D data, optionally regularised by MICE (MICE paper Sec. 5.3, Eq. 20-21).

The generator maps noise z and a code c to a sample, ``x = G(z, c)``. The discriminator D is trained
on Eq. 20; the generator minimises Eq. 21::

    L_D = -(E_P log D(x) + E_Z log(1 - D(G(z, c))))
    L_G = E_Z log(1 - D(G(z, c))) - beta * I_MICE(G(z, c); c)          (generator_loss="saturating")
    L_G = -E_Z log D(G(z, c))     - beta * I_MICE(G(z, c); c)          (generator_loss="non_saturating")

I_MICE is the DV bound of ``pdrl.losses.MICELoss`` on a separable critic ``<enc_x(x_i), enc_c(c_j)>`` whose
two encoders have a spectrally normalised last layer (the MICE continuity constraint). The critic and
the generator both ascend the bound, as in InfoGAN and MINE's GAN (Belghazi et al. 2018): a generator
whose samples tell the code apart has to spread its codes over distinct regions, which counters mode
collapse. ``beta = 0`` is the vanilla GAN (no critic is built).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from pytorch_lightning import LightningModule

from pdrl.errors import ConfigError
from pdrl.heads import SeparableCritic
from pdrl.losses import build_objective
from pdrl.metrics import grid_metrics
from pdrl.nets.mlp import MLP
from pdrl.tasks.names import ObjectiveName

CODES = ("categorical", "uniform")
GENERATOR_LOSSES = ("saturating", "non_saturating")


class GAN(LightningModule):
    """Vanilla GAN (``beta=0``) or GAN + MICE (``beta>0``) on a 2-D mixture such as the 25 Gaussians.

    Validation generates as many samples as the real evaluation batch and logs ``val/modes_covered`` and
    ``val/high_quality_share`` (``pdrl.metrics.grid_metrics``); it returns the real and generated samples and the
    metrics, which ``pdrl.callbacks.gan_samples.GANSamplesPlot`` draws. It needs a datamodule with ``centres`` and
    ``std`` (``GaussianGridDataModule``).

    Args:
        noise_dim: size of the noise z ~ U[0, 1]^noise_dim (the MICE paper's standard uniform).
        code: ``"categorical"`` (one-hot of ``code_dim`` equally likely values) or ``"uniform"``
            (continuous U[-1, 1]^code_dim).
        code_dim: number of categories, or size of the continuous code.
        hidden_dims: hidden widths of the generator and of the discriminator (ReLU MLPs).
        beta: weight of the MI term in the generator loss; 0 for the vanilla GAN.
        objective: registry name of the MI estimator (``mice``).
        objective_args: its keyword arguments.
        critic_hidden_dims: hidden widths of both critic encoders.
        critic_dim: size of the critic embeddings whose inner product is the score.
        generator_loss: ``"saturating"`` (Eq. 21 as written) or ``"non_saturating"`` (-log D, the usual fix).
        lr: Adam learning rate of every network.
        betas: Adam betas.
        eval_seed: seeds the noise and codes of the evaluation samples.
    """

    def __init__(
        self,
        noise_dim: int = 2,
        code: str = "categorical",
        code_dim: int = 25,
        hidden_dims: Sequence[int] = (128, 128, 128),
        beta: float = 0.0,
        objective: ObjectiveName = "mice",
        objective_args: dict[str, Any] | None = None,
        critic_hidden_dims: Sequence[int] = (128, 128),
        critic_dim: int = 32,
        generator_loss: str = "non_saturating",
        lr: float = 1e-3,
        betas: Sequence[float] = (0.5, 0.999),
        eval_seed: int = 0,
    ) -> None:
        super().__init__()
        if code not in CODES:
            raise ConfigError(f"GAN(code={code!r}) is unknown: choose one of {CODES}.")
        if generator_loss not in GENERATOR_LOSSES:
            raise ConfigError(f"GAN(generator_loss={generator_loss!r}) is unknown: choose one of {GENERATOR_LOSSES}.")
        if not beta >= 0:
            raise ConfigError(f"GAN(beta={beta!r}) must be >= 0 (0 for the vanilla GAN).")
        if code == "categorical" and code_dim < 2:
            raise ConfigError(f"GAN(code_dim={code_dim}) must be >= 2 categories for a categorical code.")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = MLP(noise_dim + code_dim, list(hidden_dims), 2)
        self.discriminator = MLP(2, list(hidden_dims), 1)
        self.mi_estimator = build_objective(objective, **(objective_args or {})) if beta > 0 else None
        if self.mi_estimator is not None:
            self.sample_encoder = MLP(2, list(critic_hidden_dims), critic_dim, spectral_norm="last")
            self.code_encoder = MLP(code_dim, list(critic_hidden_dims), critic_dim, spectral_norm="last")
            self.critic = SeparableCritic()

    @property
    def objective_name(self) -> str:
        """The objective's registry name, as the config gives it (``pdrl.contracts.NamesObjective``)."""
        return self.hparams.objective

    def sample_latent(self, num_samples: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """Noise z ~ U[0, 1] and codes c (one-hot categorical or U[-1, 1]) for ``num_samples`` samples."""
        hp = self.hparams
        noise = torch.rand(num_samples, hp.noise_dim, generator=generator, device=self.device)
        if hp.code == "categorical":
            labels = torch.randint(hp.code_dim, (num_samples,), generator=generator, device=self.device)
            code = F.one_hot(labels, hp.code_dim).float()
        else:
            code = 2 * torch.rand(num_samples, hp.code_dim, generator=generator, device=self.device) - 1
        return noise, code

    def generate(self, noise: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """x = G(z, c)."""
        return self.generator(torch.cat([noise, code], dim=1))

    def mi_scores(self, samples: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """The critic's score matrix ``scores[i, j] = <enc_x(x_i), enc_c(c_j)>``."""
        return self.critic(self.sample_encoder(samples), self.code_encoder(code))

    def training_step(self, real: torch.Tensor, batch_idx: int) -> None:
        discriminator_optimizer, generator_optimizer = self.optimizers()
        noise, code = self.sample_latent(real.shape[0])

        real_logits = self.discriminator(real)
        fake_logits = self.discriminator(self.generate(noise, code).detach())
        # Eq. 20 as a loss: -log D(x) = softplus(-logit), -log(1 - D(G)) = softplus(logit).
        discriminator_loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        discriminator_optimizer.zero_grad()
        self.manual_backward(discriminator_loss)
        discriminator_optimizer.step()

        fake = self.generate(noise, code)
        fake_logits = self.discriminator(fake)
        if self.hparams.generator_loss == "saturating":
            adversarial_loss = -F.softplus(fake_logits).mean()  # log(1 - D(G)) = -softplus(logit)
        else:
            adversarial_loss = F.softplus(-fake_logits).mean()  # -log D(G)
        generator_loss = adversarial_loss
        if self.mi_estimator is not None:
            scores = self.mi_scores(fake, code)
            generator_loss = generator_loss + self.hparams.beta * self.mi_estimator(scores)
            self.log("train/mi", self.mi_estimator.mi(scores))
        generator_optimizer.zero_grad()
        self.manual_backward(generator_loss)
        generator_optimizer.step()

        self.log("train/discriminator_loss", discriminator_loss, prog_bar=True)
        self.log("train/generator_loss", adversarial_loss, prog_bar=True)

    def validation_step(self, real: torch.Tensor, batch_idx: int) -> dict[str, Any]:
        datamodule = self.trainer.datamodule
        if not hasattr(datamodule, "centres") or not hasattr(datamodule, "std"):
            raise ConfigError(
                "GAN evaluates with the grid metrics and needs a datamodule with `centres` and `std`, "
                "e.g. pdrl.data.gaussian_grid.GaussianGridDataModule."
            )
        latent_generator = torch.Generator(device=self.device).manual_seed(self.hparams.eval_seed)
        generated = self.generate(*self.sample_latent(real.shape[0], latent_generator))
        metrics = grid_metrics(generated.cpu(), datamodule.centres, datamodule.std)
        self.log("val/modes_covered", metrics["modes_covered"], batch_size=real.shape[0])
        self.log("val/high_quality_share", metrics["high_quality_share"], batch_size=real.shape[0])
        return {"real": real.detach(), "generated": generated.detach(), "metrics": metrics}

    def configure_optimizers(self):
        hp = self.hparams
        generator_parameters = list(self.generator.parameters())
        if self.mi_estimator is not None:
            generator_parameters += list(self.sample_encoder.parameters()) + list(self.code_encoder.parameters())
        return (
            torch.optim.Adam(self.discriminator.parameters(), lr=hp.lr, betas=tuple(hp.betas)),
            torch.optim.Adam(generator_parameters, lr=hp.lr, betas=tuple(hp.betas)),
        )
