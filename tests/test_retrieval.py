"""Cross-modal retrieval on generated word-vector files with a known dependency: beats chance (1/5)."""

import math
from types import SimpleNamespace

import pytest
import torch

from pdrl.callbacks.retrieval_table import retrieval_table, table_columns, table_markdown
from pdrl.data.word_vectors import synthetic_word_vectors, write_word_vectors
from pdrl.fit import main as fit
from pdrl.tasks.retrieval import CrossModalRetrieval


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


@pytest.fixture(scope="module")
def vector_files(tmp_path_factory):
    """1000 words, 16-d: text = a fixed random nonlinear map of audio + noise, in the real .vec format."""
    folder = tmp_path_factory.mktemp("vectors")
    words, audio, text = synthetic_word_vectors(1000, dim=16, noise=0.5, seed=0)
    write_word_vectors(folder / "audio.vec", words, audio)
    write_word_vectors(folder / "text.vec", words, text)
    return str(folder / "audio.vec"), str(folder / "text.vec")


def small_model(**objective_args) -> CrossModalRetrieval:
    return CrossModalRetrieval(input_dim=4, hidden_dims=[8], embedding_dim=4, objective_args=objective_args)


def test_imbalanced_pc_pmi_reads_the_candidates_at_the_training_negatives():
    """5 candidates of a critic trained at batch 512: log(511) is added, from the buffer, with no padding."""
    model = small_model(balanced=False)
    model.training_negatives.fill_(511)
    scores = torch.randn(3, 5)
    pmi = model.pmi(scores)
    assert pmi.shape == (3, 5)
    torch.testing.assert_close(pmi, scores + math.log(511))
    torch.testing.assert_close(pmi, model.objective.log_pd(scores, n_negatives=511))
    model.training_negatives.fill_(127)  # the count, not the 5 candidates, sets the prior ratio
    torch.testing.assert_close(model.pmi(scores), scores + math.log(127))
    model.training_negatives.fill_(0)
    with pytest.raises(RuntimeError, match="attach the model to a Trainer"):
        model.pmi(scores)


def test_elementwise_pmi_does_not_depend_on_the_training_negatives():
    model = CrossModalRetrieval(input_dim=4, hidden_dims=[8], embedding_dim=4, objective="drfc")
    scores = torch.rand(3, 5) + 0.1
    model.training_negatives.fill_(511)
    first = model.pmi(scores)
    model.training_negatives.fill_(7)
    torch.testing.assert_close(model.pmi(scores), first)
    torch.testing.assert_close(first, model.objective.log_pd(scores))


def test_setup_and_training_step_record_the_negatives_per_row():
    model = small_model(balanced=False)
    datamodule = SimpleNamespace(hparams={"batch_size": 64})
    model.trainer = SimpleNamespace(datamodule=datamodule, world_size=2)  # a stand-in, for setup only
    model.setup("fit")
    assert int(model.training_negatives) == 31  # 64 pairs on 2 ranks, each row scored against its 32 columns
    model.training_negatives.fill_(0)
    model.hparams.gather_distributed = True
    model.setup("fit")
    assert int(model.training_negatives) == 63  # gathered: against the whole global batch
    model._trainer = None
    model.log = lambda *args, **kwargs: None
    model.training_step((torch.randn(6, 4), torch.randn(6, 4)), 0)
    assert int(model.training_negatives) == 5


def test_table_ranks_candidates_by_pmi():
    words = ["depths", "mildewed", "lugged", "alison", "pity"]
    examples = [(torch.tensor([0, 1, 2, 3, 4]), torch.tensor([15.22, -58.62, -92.24, -108.02, -104.44]))]
    examples.append((torch.tensor([1, 0, 2, 3, 4]), torch.tensor([-10.72, -2.33, -12.53, -18.11, -44.31])))
    rows = retrieval_table(examples, words)
    assert rows[0] == [
        "depths", "depths (15.22)", "mildewed (-58.62)", "lugged (-92.24)", "pity (-104.44)", "alison (-108.02)", "yes"
    ]  # fmt: skip
    assert rows[1][0] == "mildewed" and rows[1][1] == "depths (-2.33)" and rows[1][-1] == "no"
    markdown = table_markdown(rows, table_columns(5), "pcc", 0.5, 10)
    assert "1:5 matching" in markdown and "Top-1 accuracy: 50.00% (chance 20%)" in markdown
    assert "| depths | depths (15.22) |" in markdown


@pytest.mark.slow
@pytest.mark.parametrize(
    ("objective", "epochs"),
    [("pcc", 12), ("drfc", 5)],  # the imbalanced PC first learns the prior ratio, so it needs more steps
)
def test_config_trains_on_generated_files_and_beats_chance(tmp_path, vector_files, objective, epochs):
    audio_path, text_path = vector_files
    torch.manual_seed(0)
    cli = fit(
        [
            "--config", "configs/retrieval.yaml", "--data.audio_path", audio_path, "--data.text_path", text_path,
            "--data.num_test_words", "200", "--data.batch_size", "64", "--model.input_dim", "16",
            "--model.hidden_dims", "[64]", "--model.embedding_dim", "32", "--model.objective", objective,
            *(["--model.objective_args", "{}"] if objective == "drfc" else []),
            "--trainer.max_epochs", str(epochs), "--trainer.check_val_every_n_epoch", str(epochs),
            "--trainer.num_sanity_val_steps", "0", "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path),
        ]
    )  # fmt: skip
    accuracy = float(cli.trainer.callback_metrics["val/top1_accuracy"])
    assert accuracy > 0.4, f"{objective}: top-1 accuracy {accuracy} is not well above chance (0.2)"
    table = (tmp_path / "retrieval_table.md").read_text()
    assert f"Top-1 accuracy: {100 * accuracy:.2f}%" in table
    assert len([line for line in table.splitlines() if line.startswith("| w")]) == 6  # 3 correct + 3 incorrect
