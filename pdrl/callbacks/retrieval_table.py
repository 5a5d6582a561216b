"""The PD paper's Table 2 for cross-modal retrieval: example trials with their candidates ranked by estimated PMI.

``RetrievalTable`` collects, from the validation outputs of ``pdrl.tasks.retrieval.CrossModalRetrieval``
(``{"candidate_index", "pmi", "correct"}`` per batch), ``num_examples`` correct and as many incorrect trials of
rank 0, and at the end of every validation (not the sanity check) writes them with the top-1 accuracy
(``val/top1_accuracy``) as Markdown to ``<default_root_dir>/retrieval_table.md`` and, with a W&B logger, as the
table ``val/retrieval_examples``. It needs a datamodule with ``test_words`` and ``hparams.num_candidates``
(``WordVectorDataModule``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from pytorch_lightning import Callback, LightningModule, Trainer

from pdrl.errors import ConfigError
from pdrl.wandb_setup import wandb_loggers


class RetrievalTable(Callback):
    """Write Table 2 after every validation.

    Args:
        num_examples: correct and incorrect trials shown in the table (3 each).
    """

    def __init__(self, num_examples: int = 3) -> None:
        if not (isinstance(num_examples, int) and num_examples >= 1):
            raise ConfigError(f"RetrievalTable(num_examples={num_examples!r}) must be a whole number >= 1, e.g. 3.")
        self.num_examples = num_examples
        self.examples: dict[bool, list[tuple[torch.Tensor, torch.Tensor]]] = {True: [], False: []}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if getattr(trainer.datamodule, "test_words", None) is None:  # the datamodule's setup ran first
            raise ConfigError("RetrievalTable needs a datamodule with `test_words`: use WordVectorDataModule.")

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.examples = {True: [], False: []}

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        trials = zip(outputs["candidate_index"], outputs["pmi"], outputs["correct"], strict=True)
        for candidate_index, pmi, correct in trials:
            examples = self.examples[bool(correct)]
            if len(examples) < self.num_examples:
                examples.append((candidate_index.cpu(), pmi.detach().cpu()))

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        examples, self.examples = self.examples[True] + self.examples[False], {True: [], False: []}
        accuracy = float(trainer.callback_metrics["val/top1_accuracy"])
        table = retrieval_table(examples, trainer.datamodule.test_words)
        columns = table_columns(trainer.datamodule.hparams.num_candidates)
        os.makedirs(trainer.default_root_dir, exist_ok=True)
        path = os.path.join(trainer.default_root_dir, "retrieval_table.md")
        objective = pl_module.hparams.objective
        with open(path, "w", encoding="utf-8") as file:
            file.write(table_markdown(table, columns, objective, accuracy, trainer.global_step))
        for logger in wandb_loggers(trainer):
            logger.log_table("val/retrieval_examples", columns=columns, data=table, step=trainer.global_step)


def table_columns(num_candidates: int) -> list[str]:
    """Header of Table 2: the audio word, the candidates by rank, and whether the top one is right."""
    return ["audio word", *(f"rank {k}" for k in range(1, num_candidates + 1)), "correct"]


def retrieval_table(examples: list[tuple[torch.Tensor, torch.Tensor]], words: Sequence[str]) -> list[list[str]]:
    """Rows of Table 2: the audio word, then every candidate as ``word (PMI)`` from highest PMI to lowest.

    Args:
        examples: per trial, the candidates' indices into ``words`` (column 0 the true word) and their PMI.
        words: the test words.
    """
    rows = []
    for candidate_index, pmi in examples:
        order = torch.argsort(pmi, descending=True, stable=True)
        ranked = [f"{words[int(candidate_index[k])]} ({float(pmi[k]):.2f})" for k in order]
        correct = bool(pmi[0] > pmi[1:].max())
        rows.append([words[int(candidate_index[0])], *ranked, "yes" if correct else "no"])
    return rows


def table_markdown(rows: list[list[str]], columns: list[str], objective: str, accuracy: float, step: int) -> str:
    """Table 2 as Markdown, with the top-1 accuracy of the 1:k matching."""
    lines = [
        f"# Cross-modal retrieval, 1:{len(columns) - 2} matching ({objective}, step {step})",
        "",
        f"Top-1 accuracy: {100 * accuracy:.2f}% (chance {100 / (len(columns) - 2):.0f}%). "
        "Candidates ranked by estimated PMI (log PD).",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
