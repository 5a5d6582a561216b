"""``pdrl.hardware.flush_denormals``: denormal floats read as zero on every torch thread, not only the caller's,
and the shallow task's fast path turns it on for ``fit`` and off after."""

from __future__ import annotations

import pytest
import torch

from pdrl.hardware import flush_denormals, loaded_openmp_runtimes
from pdrl.heads import BilinearCritic
from pdrl.nets.realnvp import RealNVP
from pdrl.tasks.representation import RepresentationLearning

DENORMAL = 1e-39  # below float32's smallest normal number, 1.18e-38
pytestmark = pytest.mark.skipif(
    not torch.set_flush_denormal(False), reason="this CPU has no flush-to-zero mode (torch: x86 with SSE3 only)"
)


def denormals_left(threads: int = 2) -> int:
    """How many of 2^20 denormal inputs survive a multiplication by one that torch splits over ``threads`` threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return int((torch.full((1 << 20,), DENORMAL) * 1.0).count_nonzero())
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def denormals_kept_after_each_test():
    yield
    torch.set_num_threads(2)
    flush_denormals(False)


def test_denormals_survive_by_default():
    assert denormals_left() == 1 << 20


def test_every_thread_flushes_denormals_not_only_the_calling_one():
    torch.set_num_threads(2)
    assert loaded_openmp_runtimes()
    assert flush_denormals(True)
    assert denormals_left(threads=2) == 0  # torch.set_flush_denormal alone leaves the second thread's half
    assert flush_denormals(False)
    assert denormals_left(threads=2) == 1 << 20


@pytest.mark.parametrize("order", ["as mapped", "torch's last"])
def test_torchs_threads_flush_denormals_also_with_scikit_learns_openmp_runtime_loaded(monkeypatch, order):
    """The linear probe loads scikit-learn, whose wheel brings a second libgomp (mapped before torch's in a real run);
    torch's threads must flush whichever comes first."""
    from sklearn.decomposition import _cdnmf_fast  # noqa: F401  (a module linked against scikit-learn's libgomp)

    import pdrl.hardware

    torch.set_num_threads(2)
    runtimes = loaded_openmp_runtimes()
    assert len(runtimes) == 2 and any("torch" in path for path in runtimes), runtimes
    if order == "torch's last":
        runtimes.sort(key=lambda path: "torch" in path)
        monkeypatch.setattr(pdrl.hardware, "loaded_openmp_runtimes", lambda: runtimes)
    assert flush_denormals(True)
    assert denormals_left(threads=2) == 0


def make_task(fast: bool) -> RepresentationLearning:
    return RepresentationLearning(RealNVP(8, 2, (16,)), RealNVP(8, 2, (16,), seed=1), BilinearCritic(8, 8), fast=fast)


@pytest.mark.parametrize("ending", ["on_fit_end", "on_exception"])
def test_the_fast_path_flushes_denormals_while_fit_runs_and_restores_them_after(ending):
    torch.set_num_threads(2)
    task = make_task(fast=True)
    [callback] = task.configure_callbacks()
    callback.on_fit_start(None, task)
    assert denormals_left() == 0
    if ending == "on_fit_end":
        callback.on_fit_end(None, task)
    else:  # a fit that stops on an error (a NaN loss, a bad batch) gives the process its floats back too
        callback.on_exception(None, task, RuntimeError("stopped"))
    assert denormals_left() == 1 << 20


def test_the_float32_path_leaves_denormals_alone():
    assert make_task(fast=False).configure_callbacks() == []


def test_a_failing_fit_leaves_no_flush_behind(tmp_path):
    """Through a real Trainer: the fit raises in its first step, and denormals survive again afterwards."""
    from pytorch_lightning import Trainer

    from pdrl.data.images import DigitsDataModule

    class Failing(RepresentationLearning):
        def training_step(self, batch, batch_idx):
            assert denormals_left() == 0  # flushed while fit runs
            raise RuntimeError("a failing step")

    torch.set_num_threads(2)
    task = Failing(RealNVP(32, 2, (16,)), RealNVP(32, 2, (16,), seed=1), BilinearCritic(32, 32), fast=True)
    trainer = Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    with pytest.raises(RuntimeError, match="a failing step"):
        trainer.fit(task, datamodule=DigitsDataModule())
    assert denormals_left() == 1 << 20
