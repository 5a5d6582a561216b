"""Word-vector files: round trip, alignment, split, matching trials, and every malformed-file error."""

import pytest
import torch

from pdrl.data.word_vectors import (
    WordVectorDataModule,
    WordVectorFileError,
    align_by_word,
    matching_candidates,
    read_word_vectors,
    split_test_words,
    synthetic_word_vectors,
    write_word_vectors,
)


def write_text(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_round_trip(tmp_path):
    words, audio, _ = synthetic_word_vectors(7, dim=4, seed=1)
    path = tmp_path / "audio.vec"
    write_word_vectors(path, words, audio)
    read_words, vectors = read_word_vectors(path)
    assert read_words == words
    assert torch.equal(vectors, audio)
    assert path.read_text().splitlines()[0] == "7 4"


def test_reads_trailing_spaces_and_unicode(tmp_path):
    path = write_text(tmp_path / "a.vec", "2 2\nalma’s 1 2 \ncos -0.5 3e-2\n")
    words, vectors = read_word_vectors(path)
    assert words == ["alma’s", "cos"]
    assert torch.allclose(vectors, torch.tensor([[1.0, 2.0], [-0.5, 0.03]]))


@pytest.mark.parametrize(
    ("content", "line", "what"),
    [
        ("two 2\na 1 2\n", 1, "header"),
        ("2\na 1 2\nb 1 2\n", 1, "header"),
        ("2 2\na 1 2\nb 1 x\n", 3, "not a number"),
        ("2 2\na 1 2\nb 1 2 3\n", 3, "has 3 values; the header says D = 2"),
        ("2 2\na 1\nb 1 2\n", 2, "has 1 values"),
        ("2 2\na 1 2\n\nb 1 2\n", 3, "empty line"),
        ("2 2\na 1 2\na 3 4\n", 3, "repeats line 2"),
        ("3 2\na 1 2\nb 1 2\n", 1, "announces N = 3 vectors but the file has 2"),
        ("1 2\na 1 2\nb 1 2\n", 1, "announces N = 1 vectors but the file has 2"),
        ("2 2\na 1 2\nb 1 nan\n", 3, "non-finite"),
    ],
)
def test_malformed_file_names_file_and_line(tmp_path, content, line, what):
    path = write_text(tmp_path / "bad.vec", content)
    with pytest.raises(WordVectorFileError) as error:
        read_word_vectors(path)
    assert f"{path}, line {line}:" in str(error.value)
    assert what in str(error.value)


def test_invalid_utf8_names_line(tmp_path):
    path = tmp_path / "bad.vec"
    path.write_bytes(b"1 1\n\xff\xfe 1\n")
    with pytest.raises(WordVectorFileError, match=r"bad.vec, line 2: not valid UTF-8"):
        read_word_vectors(path)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_word_vectors("/nonexistent/speech2vec/100.vec")


def test_align_by_word_keeps_audio_order_and_pairs_rows():
    audio = (["a", "b", "c"], torch.tensor([[1.0], [2.0], [3.0]]))
    text = (["c", "x", "a"], torch.tensor([[30.0], [0.0], [10.0]]))
    words, audio_vectors, text_vectors = align_by_word(audio, text)
    assert words == ["a", "c"]
    assert audio_vectors.flatten().tolist() == [1.0, 3.0]
    assert text_vectors.flatten().tolist() == [10.0, 30.0]


def test_empty_overlap_names_both_files():
    with pytest.raises(ValueError, match="audio.vec and text.vec share no word"):
        align_by_word((["a"], torch.zeros(1, 1)), (["b"], torch.zeros(1, 1)), "audio.vec", "text.vec")


def test_seeded_split_is_a_fixed_partition():
    words = [f"w{i}" for i in range(50)]
    train, test = split_test_words(words, 10, seed=3)
    again_train, again_test = split_test_words(words, 10, seed=3)
    assert torch.equal(test, again_test) and torch.equal(train, again_train)
    assert len(test) == 10 and sorted(train.tolist() + test.tolist()) == list(range(50))
    with pytest.raises(ValueError, match="num_test_words=50"):
        split_test_words(words, 50, seed=0)


def test_split_from_file(tmp_path):
    words = ["a", "b", "c", "d"]
    train, test = split_test_words(words, 0, 0, write_text(tmp_path / "test.txt", "d\nb\n"))
    assert test.tolist() == [1, 3] and train.tolist() == [0, 2]
    bad = write_text(tmp_path / "bad.txt", "a\nzebra\n")
    with pytest.raises(WordVectorFileError, match=r"bad.txt, line 2: test word 'zebra'"):
        split_test_words(words, 0, 0, bad)


def test_matching_candidates_are_self_plus_distinct_others():
    candidates = matching_candidates(30, 5, seed=0)
    assert torch.equal(candidates[:, 0], torch.arange(30))
    for row, candidate_row in enumerate(candidates.tolist()):
        assert len(set(candidate_row)) == 5 and row not in candidate_row[1:]
    assert torch.equal(candidates, matching_candidates(30, 5, seed=0))


def test_datamodule_batches(tmp_path):
    words, audio, text = synthetic_word_vectors(60, dim=6, seed=0)
    write_word_vectors(tmp_path / "audio.vec", words, audio)
    write_word_vectors(tmp_path / "text.vec", words[::-1], text.flip(0))  # the alignment must undo the order
    data = WordVectorDataModule(
        str(tmp_path / "audio.vec"), str(tmp_path / "text.vec"), num_test_words=20, batch_size=8
    )
    data.setup("fit")
    audio_batch, text_batch = next(iter(data.train_dataloader()))
    assert audio_batch.shape == text_batch.shape == (8, 6)
    rows = [words.index(word) for word in data.test_words[:4]]
    trial_audio, trial_text, trial_index = next(iter(data.val_dataloader()))
    assert trial_text.shape == (8, 5, 6) and torch.equal(trial_index[:4, 0], torch.arange(4))
    assert torch.equal(trial_audio[:4], audio[rows]) and torch.equal(trial_text[:4, 0], text[rows])


def test_datamodule_dimension_mismatch(tmp_path):
    write_text(tmp_path / "a.vec", "1 2\nw 1 2\n")
    write_text(tmp_path / "t.vec", "1 3\nw 1 2 3\n")
    data = WordVectorDataModule(str(tmp_path / "a.vec"), str(tmp_path / "t.vec"), num_test_words=1, batch_size=2)
    with pytest.raises(WordVectorFileError, match=r"has dimension 2 and .*t.vec has 3 \(header line 1\)"):
        data.setup("fit")
