"""Cross-modal retrieval by point-wise dependency (PD paper Application III, Table 2).

Two MLP encoders (audio F, text G; 100 -> 512 -> 512 -> 128, ReLU) and a separable critic give the score
matrix ``scores[i, j] = <F(x_i), G(y_j)>`` of a batch of word pairs; the other words of the batch are the
negatives. An objective of ``pdrl.losses`` (PC: ``pcc`` with ``balanced: false``, or D-RF: ``drfc``) turns
the scores into a loss and into the estimated PMI, ``log r(x, y) = objective.log_pd(scores, n_negatives=k)``,
k the marginal candidates per row of the training matrix (``training_negatives``).

Evaluation (the paper's 1:5 matching): each held-out audio vector x is scored against 5 text candidates
(its own word's and 4 other test words'); the trial is correct when its own text has the strictly highest
estimated PMI. Top-1 accuracy is ``val/top1_accuracy``; chance is 1/5.

The paper's PC is the imbalanced BCE (``balanced: false``: 1 positive to 511 negatives per row at batch 512).
On generated vectors (``bench/results/retrieval_synthetic.md``) it learns far more slowly than the balanced BCE
or D-RF: it first learns the prior ratio log(511) and only then the dependency.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pytorch_lightning import LightningModule
from torchmetrics import MeanMetric

from pdrl.errors import ConfigError
from pdrl.heads import SeparableCritic
from pdrl.losses import build_objective
from pdrl.nets.mlp import MLP
from pdrl.tasks.names import ObjectiveName


class CrossModalRetrieval(LightningModule):
    """Learn the PD between audio and text word vectors; retrieve text by estimated PMI.

    Validation logs ``val/top1_accuracy`` and returns each trial's candidates and their PMI, from which
    ``pdrl.callbacks.retrieval_table.RetrievalTable`` writes the paper's Table 2.

    Args:
        input_dim: dimension of both word vectors (100).
        hidden_dims: hidden widths of each encoder ((512, 512)).
        embedding_dim: output size of each encoder (128).
        objective: registry name: ``pcc`` (PC) or ``drfc`` (D-RF), or any other of ``pdrl.losses``.
        objective_args: its keyword arguments (``{balanced: false}`` for the paper's PC).
        temperature: divides the inner products.
        lr: Adam learning rate (1e-3).
        gather_distributed: score every rank's rows against the text embeddings of all ranks.
    """

    def __init__(
        self,
        input_dim: int = 100,
        hidden_dims: Sequence[int] = (512, 512),
        embedding_dim: int = 128,
        objective: ObjectiveName = "pcc",
        objective_args: dict[str, Any] | None = None,
        temperature: float = 1.0,
        lr: float = 1e-3,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.audio_encoder = MLP(input_dim, list(hidden_dims), embedding_dim)
        self.text_encoder = MLP(input_dim, list(hidden_dims), embedding_dim)
        self.critic = SeparableCritic(temperature=temperature, gather_distributed=gather_distributed)
        self.objective = build_objective(objective, **(objective_args or {}))
        # Marginal candidates per row of the training score matrix (0: not known yet), saved in checkpoints: the
        # imbalanced PC learns the log-PD minus log(training_negatives), which its readout of any matrix adds back.
        self.register_buffer("training_negatives", torch.tensor(0, dtype=torch.long))
        self.val_accuracy = MeanMetric()

    @property
    def objective_name(self) -> str:
        """The objective's registry name, as the config gives it (``pdrl.contracts.NamesObjective``)."""
        return self.hparams.objective

    def pmi(self, scores: torch.Tensor) -> torch.Tensor:
        """Estimated PMI of each entry of an ``(n, k)`` score matrix, as the objective reads it out.

        ``objective.log_pd(scores, n_negatives=training_negatives)``: the readout of the imbalanced PC adds the
        prior ratio log(k) of the k negatives per row the critic was trained against, whatever the number of
        candidates scored here (every other readout is elementwise and ignores k).
        """
        negatives = int(self.training_negatives)
        if negatives < 1:
            raise RuntimeError(
                "CrossModalRetrieval.pmi: the number of negatives per row of the training score matrix is not known "
                "yet; attach the model to a Trainer with a WordVectorDataModule first, or load a trained checkpoint."
            )
        return self.objective.log_pd(scores, n_negatives=negatives)

    def setup(self, stage: str) -> None:
        batch_size = getattr(self.trainer.datamodule, "hparams", {}).get("batch_size")
        if batch_size is None:
            raise ConfigError(
                "CrossModalRetrieval needs a datamodule with a `batch_size` hparam: use WordVectorDataModule."
            )
        # batch_size is the global batch: gathered, each row is scored against all of it; else against its share
        world = 1 if self.hparams.gather_distributed else self.trainer.world_size
        if int(self.training_negatives) == 0:  # a paired matrix: every other row of the batch is a negative
            self.training_negatives.fill_(batch_size // world - 1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        audio, text = batch
        scores = self.critic(self.audio_encoder(audio), self.text_encoder(text))
        self.training_negatives.fill_(scores.shape[1] - 1)  # paired (the loss checks the shape): m - 1 per row
        loss = self.objective(scores)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/mi", self.objective.mi(scores))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> dict[str, torch.Tensor]:
        audio, candidate_text, candidate_index = batch
        num_trials, num_candidates, dim = candidate_text.shape
        text_embedding = self.text_encoder(candidate_text.reshape(-1, dim)).reshape(num_trials, num_candidates, -1)
        pmi = self.pmi(self.critic.own_candidates(self.audio_encoder(audio), text_embedding))
        correct = pmi[:, 0] > pmi[:, 1:].amax(dim=1)
        self.val_accuracy.update(correct.float())
        self.log("val/mean_pmi_true_pair", pmi[:, 0].mean(), batch_size=num_trials, sync_dist=True)
        return {"candidate_index": candidate_index, "pmi": pmi, "correct": correct}

    def on_validation_epoch_end(self) -> None:
        accuracy = self.val_accuracy.compute()  # exact over every rank's trials
        self.val_accuracy.reset()
        self.log("val/top1_accuracy", accuracy, prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
