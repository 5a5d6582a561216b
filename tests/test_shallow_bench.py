"""The shallow task's benchmark scripts: the wall-time budget Lightning accepts, the floor's precision by CPU, the
machine named in every report (timings from two CPUs are not comparable), and ``python -m bench.shallow``, which runs
them."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import Timer

from bench import machine, shallow_mnist, shallow_speed, shallow_step_profile
from bench.shallow_mnist import wall_time_budget


@pytest.mark.parametrize("minutes, expected", [(5, "00:00:05:00"), (85, "00:01:25:00"), (115.9, "00:01:55:00")])
def test_wall_time_budget_is_a_duration_that_lightning_accepts(minutes, expected):
    assert wall_time_budget(minutes) == expected
    assert Timer(duration=expected)._duration == minutes // 1 * 60


def test_describe_names_the_cpu_and_whether_bf16_is_native():
    text = machine.describe()
    assert machine.cpu_model() in text and ("bf16 native" in text or "bf16 not native" in text)
    assert machine.cpu_tag().startswith(shallow_speed.torch.backends.cpu.get_cpu_capability().lower())


def test_describe_names_the_gpu_where_there_is_one(monkeypatch):
    monkeypatch.setattr(machine.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(machine.torch.cuda, "get_device_name", lambda index: "NVIDIA H100 80GB HBM3")
    assert machine.describe().endswith(f", GPU NVIDIA H100 80GB HBM3 (CUDA {machine.torch.version.cuda})")


@pytest.mark.parametrize("amx, bf16, expected", [(True, True, "avx512_amx_bf16"), (False, True, "avx512_bf16"),
                                                 (False, False, "avx512")])  # fmt: skip
def test_cpu_tag_keeps_amx_machines_apart(monkeypatch, amx, bf16, expected):
    """An AMX CPU multiplies bf16 several times faster than AVX512-BF16 alone: its timings must not overwrite those."""
    monkeypatch.setattr(machine.torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(machine, "has_amx", lambda: amx)
    monkeypatch.setattr(machine, "bf16_is_fast", lambda device: bf16)
    assert machine.cpu_tag() == expected


def report_row(gemm_bf16: float) -> dict:
    return {
        "threads": 1, "bare_fp32": 500.0, "bare_fp32_flush": 400.0, "bare_fast": 200.0, "pdrl_fit": 250.0,
        "probe_seconds": 12.0, "raw_fit_seconds": 5.0,
        "load": 1.0, "gemm_bf16": gemm_bf16, "gemm_fp32": 300.0, "adam_fused": 20.0, "gflop_per_step": 21.5,
        "autocast_casts": 30.0,
        "rounds": {"bare_fp32": [500.0], "pdrl_fit": [250.0]},
    }  # fmt: skip


@pytest.mark.parametrize("gemm_bf16, floor", [(math.nan, 320.0), (100.0, 120.0)])
def test_the_floor_is_float32_where_bf16_is_not_native(tmp_path, gemm_bf16, floor):
    args = argparse.Namespace(rounds=1, steps=10, out=tmp_path / "speed.md", from_checkpoint=None, start_step=0)
    shallow_speed.write_report(args, [report_row(gemm_bf16)], (1.0, 1.0, 1.0))
    text = args.out.read_text()
    assert "| 1 | 500.0 | 400.0 | 250.0 | 2.00x | 1.60x | 200.0 | 1.25 |" in text and "a fresh model (step 0)" in text
    assert f"| {floor:.1f} | {500 / floor:.2f}x | {floor / 250:.0%} |" in text
    casts = "n/a | n/a | n/a" if math.isnan(gemm_bf16) else f"30.0 | {floor + 30:.1f} | {500 / (floor + 30):.2f}x"
    assert f"{floor / 250:.0%} | {casts} |" in text
    assert machine.describe() in text
    assert ("n/a | n/a" in text) == math.isnan(gemm_bf16)


def parity_run(seed: int, fast: bool, accuracies: list[float]) -> dict:
    history = [{"step": 1000 * index, "accuracy": accuracy} for index, accuracy in enumerate(accuracies)]
    return {
        "seed": seed, "fast": fast, "steps": 1000 * (len(accuracies) - 1), "history": history, "threads": 2,
        "wall_seconds": 600.0, "load_before": 0.5, "load_after": 1.5, "raw_pixel_accuracy": 0.8486,
        "machine": "test CPU", "command": f"run --seed {seed} --fast {str(fast).lower()}",
    }  # fmt: skip


def test_parity_tabulates_every_probed_step_as_mean_and_std_over_seeds(tmp_path):
    runs = tmp_path / "shallow_runs"
    runs.mkdir()
    for seed, offset in enumerate((0.0, 0.002, 0.004)):
        for fast in (False, True):
            entry = parity_run(seed, fast, [0.8486, 0.860 + offset, 0.866 + offset + 0.001 * fast])
            (runs / f"parity_fast{str(fast).lower()}_seed{seed}.json").write_text(json.dumps(entry))
    for seed in (0, 1):  # another CPU's runs: a table of their own, never averaged with the first CPU's
        entry = {**parity_run(seed, True, [0.8486, 0.850, 0.851 + 0.002 * seed]), "machine": "other CPU"}
        (runs / f"parity_other_fasttrue_seed{seed}.json").write_text(json.dumps(entry))
    shallow_mnist.parity(argparse.Namespace(out=runs))
    text = (tmp_path / "shallow_parity.md").read_text()  # beside the runs' folder, not in bench/results
    first, other = text.split("## test CPU")[1].split("## other CPU")
    assert "2000 steps" in first and "step 0 (untrained) | step 1000 | step 2000 |" in first
    assert "| float32 | 0, 1, 2 | 2 | 0.8486 ± 0.0000 | 0.8620 ± 0.0020 | 0.8680 ± 0.0020 |" in first
    assert "| fast | 0, 1, 2 | 2 | 0.8486 ± 0.0000 | 0.8620 ± 0.0020 | 0.8690 ± 0.0020 |" in first
    assert "| fast | 0, 1 | 2 | 0.8486 ± 0.0000 | 0.8500 ± 0.0000 | 0.8520 ± 0.0014 |" in other
    assert "float32" not in other.split("|---|")[-1] and "Machine: other CPU; no GPU" in other
    with pytest.raises(SystemExit, match="No parity runs"):
        shallow_mnist.parity(argparse.Namespace(out=tmp_path / "empty"))


def test_the_protocol_table_holds_the_current_runs_and_names_the_earlier_ones_apart(tmp_path):
    runs = tmp_path / "shallow_runs"
    (runs / shallow_mnist.EARLIER).mkdir(parents=True)
    for folder, objective, curve in ((runs, "drfc", [0.8486, 0.8832, 0.9201]), (runs, "cpc", [0.8486, 0.8695, 0.8993]),
                                     (runs / shallow_mnist.EARLIER, "drfc", [0.8486, 0.8825, 0.9155])):  # fmt: skip
        entry = {**parity_run(0, True, curve), "objective": objective, "tag": f"protocol_{objective}"}
        (folder / f"protocol_{objective}.json").write_text(json.dumps(entry))
    shallow_mnist.protocol(argparse.Namespace(out=runs, prefix="protocol_", report="shallow_mnist"))
    text = (tmp_path / "shallow_mnist.md").read_text()
    assert text.count("| DRFC |") == 1 and text.count("| CPC |") == 1  # the earlier run is not a row of the table
    assert "| DRFC | 2000 | 10.0 | 2 | saga | test CPU | 0.5/1.5 | 0.8486 | 0.9201 | 0.9201 |" in text
    assert "on 2-core CPU" in text and "`cpu`" in text  # runs from before the device was recorded ran on the CPU
    earlier = text.split("Earlier runs of the same protocol")[1]
    assert "`shallow_runs/earlier/`" in earlier and "- DRFC: 2000 steps in 10.0 min on test CPU" in earlier
    assert "0.8486 / 0.8825 / 0.9155" in earlier and "0.9201" not in earlier
    assert (tmp_path / "shallow_mnist.png").is_file()


def test_the_bare_loop_starts_from_a_checkpoints_weights_and_adam_state_with_its_own_adam_settings():
    from pdrl.heads import BilinearCritic
    from pdrl.nets.realnvp import RealNVP
    from pdrl.tasks.representation import RepresentationLearning

    torch = shallow_speed.torch
    torch.manual_seed(1)
    encoders = [RealNVP(392, 30, (512, 512), 1e-2, seed) for seed in (0, 1)]
    task = RepresentationLearning(*encoders, BilinearCritic(392, 392), objective="pcc", fast=False)  # not compiled
    optimizer = torch.optim.Adam(task.parameters(), lr=1e-4, fused=True)  # fused, as pdrl.fit's fast path
    batch = (torch.rand(8, 392), torch.rand(8, 392))
    task.log = lambda *args, **kwargs: None
    task.training_step(batch, 0).backward()
    optimizer.step()
    checkpoint = {"state_dict": task.state_dict(), "optimizer_states": [optimizer.state_dict()]}
    run = shallow_speed.bare_loop([batch], checkpoint)
    for name, value in task.state_dict().items():
        assert torch.equal(run.modules.state_dict()[name], value), name
    loaded = [run.optimizer.state[parameter]["exp_avg"] for parameter in run.modules.parameters()]
    saved = [optimizer.state[parameter]["exp_avg"] for parameter in task.parameters()]
    assert len(loaded) == len(saved) and all(torch.equal(a, b) for a, b in zip(loaded, saved, strict=True))
    assert not run.optimizer.param_groups[0]["fused"]  # the naive loop keeps the naive Adam
    assert not run.bf16 and not hasattr(run.encode_step, "_torchdynamo_orig_callable")  # float32, eager


def test_the_fast_bare_loop_is_pdrls_fast_path_by_hand():
    torch = shallow_speed.torch
    batch = (torch.rand(8, 392), torch.rand(8, 392))
    run = shallow_speed.bare_loop([batch], fast=True)
    assert run.optimizer.param_groups[0]["fused"]
    assert run.bf16 == shallow_speed.bf16_is_fast(torch.device("cpu"))
    assert hasattr(run.encode_step, "_torchdynamo_orig_callable")  # compiled lazily, at its first step


def test_the_step_profile_sorts_ops_into_kinds_that_add_up_to_the_total():
    events = [("aten::mm", 3.0), ("aten::addmm", 1.0), ("## Call CompiledFxGraph abc ##", 5.0),
              ("aten::_fused_adam_", 2.0), ("aten::sum", 0.5), ("Optimizer.step#Adam.step", 0.25)]  # fmt: skip
    totals = shallow_step_profile.self_time_by_kind(events)
    assert totals == {"matrix products": 4.0, "compiled kernels": 5.0, "Adam": 2.0, "everything else": 0.75}
    assert sum(totals.values()) == sum(time for _, time in events)


def test_the_step_profile_finds_compiled_graphs_and_matrix_products_in_a_real_profile():
    """torch names a compiled graph's call as the profile expects: the kinds are not all 'everything else'."""
    layer = torch.nn.Linear(16, 16)
    compiled = torch.compile(lambda x: torch.relu(layer(x)).sum())
    inputs = torch.randn(8, 16)

    def run(steps: int) -> None:
        for _ in range(steps):
            compiled(inputs).backward()

    run(2)  # compiles
    kinds, others = shallow_step_profile.profile_steps(run, steps=3)
    assert kinds["compiled kernels"] > 0 and kinds["matrix products"] > 0
    assert all(shallow_step_profile.kind_of(name) == "everything else" for name, _ in others)


@pytest.mark.parametrize("objective, expected", [(None, "pcc"), ("drfc", "drfc")])
def test_the_fit_runner_trains_the_configs_objective_or_the_one_given(tmp_path, fake_data, objective, expected):
    from bench.shallow_fit_runner import pdrl_fit_runner

    fake_data.mnist(tmp_path, n_train=128)  # pdrl.fit checks the data (one batch at least) as it builds the run
    _, cli = pdrl_fit_runner(str(tmp_path), objective=objective)
    assert cli.model.objective_name == expected


def test_gpu_runs_get_their_own_report_that_names_the_device_and_the_probe(tmp_path):
    """bench/gpu_protocol.sh's runs (tag gpu_protocol_*) beside the CPU's: each report holds its own runs only."""
    runs = tmp_path / "shallow_runs"
    runs.mkdir()
    cpu = {**parity_run(0, True, [0.8486, 0.8695, 0.8993]), "objective": "cpc", "solver": "saga"}
    gpu = {**cpu, "device": "NVIDIA H100 80GB HBM3", "solver": "lbfgs", "wall_seconds": 90.0, "threads": 16}
    (runs / "protocol_cpc.json").write_text(json.dumps(cpu))
    (runs / "gpu_protocol_cpc.json").write_text(json.dumps(gpu))
    shallow_mnist.protocol(argparse.Namespace(out=runs, prefix="gpu_protocol_", report="shallow_mnist_gpu"))
    text = (tmp_path / "shallow_mnist_gpu.md").read_text()
    assert "on NVIDIA H100 80GB HBM3" in text and text.count("| CPC |") == 1
    assert "| CPC | 2000 | 1.5 | 16 | lbfgs | test CPU |" in text
    assert (tmp_path / "shallow_mnist_gpu.png").is_file() and not (tmp_path / "shallow_mnist.md").exists()


def test_the_mnist_protocol_csv_has_one_row_per_probe_in_the_cifar_header(tmp_path):
    runs = tmp_path / "shallow_runs"
    runs.mkdir()
    entry = {**parity_run(0, True, [0.8486, 0.8832, 0.9201]), "objective": "drfc", "tag": "protocol_drfc"}
    (runs / "protocol_drfc.json").write_text(json.dumps(entry))
    shallow_mnist.protocol(argparse.Namespace(out=runs, prefix="protocol_", report="shallow_mnist"))
    rows = (tmp_path / "shallow_mnist.csv").read_text().splitlines()
    assert rows[0] == "objective,seed,step,accuracy,raw_pixels,solver"
    assert rows[1:] == [
        "drfc,0,0,0.8486,0.8486,saga",
        "drfc,0,1000,0.8832,0.8486,saga",
        "drfc,0,2000,0.9201,0.8486,saga",
    ]


def cifar_run(runs, tag, curve, segments):
    """A run folder as pdrl.fit leaves it: checkpoints/last.ckpt with the probe's state, and its segments file."""
    (runs / tag / "checkpoints").mkdir(parents=True)
    history = [{"step": 1000 * index, "accuracy": accuracy, "seconds": 1.0} for index, accuracy in enumerate(curve)]
    state = {"global_step": 1000 * (len(curve) - 1),
             "callbacks": {"LinearProbe": {"history": history, "raw_pixel_accuracy": 0.3476}}}  # fmt: skip
    torch.save(state, runs / tag / "checkpoints" / "last.ckpt")
    (runs / f"{tag}.segments").write_text("\n".join(segments) + "\n")


def test_the_cifar_records_keep_each_run_and_the_report_compares_objectives_against_the_seed_spread(tmp_path):
    from bench import shallow_cifar

    runs, records = tmp_path / "runs", tmp_path / "records"
    done = ["segment start 2026-12-07T10:00:00Z load 1 1 1 resume=none", "segment stop 2026-12-07T10:30:00Z rc=0"]
    resumed = [*done, "segment start 2026-12-07T11:00:00Z load 1 1 1 resume=last", "segment stop 2026-12-07T11:15:00Z"]
    cifar_run(runs, "cpc_s0", [0.3476, 0.3550, 0.3600], done)
    cifar_run(runs, "cpc_s1", [0.3476, 0.3540, 0.3580], done)
    cifar_run(runs, "pcc_s0", [0.3476, 0.3560, 0.3640], resumed)
    cifar_run(runs, "pcc_s1", [0.3476, 0.3570, 0.3660], done)
    cifar_run(runs, "drfc_s0", [0.3476, 0.3600], done[:1])
    (runs / "notes").mkdir()  # not a run folder: skipped
    shallow_cifar.record(argparse.Namespace(runs=runs, records=records, threads=2, solver="saga"))
    pcc = json.loads((records / "pcc_s0.json").read_text())
    assert pcc["step"] == 2000 and pcc["state"] == "stopped" and pcc["training_seconds"] == 45 * 60
    assert pcc["history"][-1] == {"step": 2000, "accuracy": 0.3640} and pcc["machine"] == machine.describe()
    assert json.loads((records / "drfc_s0.json").read_text())["state"] == "running"
    (runs / "pcc_s1" / "checkpoints" / "last.ckpt").unlink()  # the machine is gone: the record stays
    (records / shallow_cifar.EARLIER).mkdir()
    earlier = {**pcc, "machine": "an earlier CPU", "note": "its checkpoint was lost"}
    (records / shallow_cifar.EARLIER / "pcc_s0_old.json").write_text(json.dumps(earlier))
    out = tmp_path / "results"
    out.mkdir()
    shallow_cifar.report(argparse.Namespace(records=records, out=out, note=""))
    rows = (out / "shallow_cifar.csv").read_text().splitlines()
    assert rows[0] == "objective,seed,step,accuracy,raw_pixels,solver" and len(rows) == 1 + 3 + 3 + 3 + 3 + 2
    assert "pcc,1,2000,0.3660,0.3476,saga" in rows
    text = (out / "shallow_cifar.md").read_text()
    assert "| PCC | 0, 1 | 0.3650 ± 0.0014 (n=2) |" in text and "| CPC | 0, 1 | 0.3590 ± 0.0014 (n=2) |" in text
    assert "PCC is above CPC at step 2000: +0.0060 in mean accuracy (2 and 2 seeds, largest seed std 0.0014)." in text
    assert "D-RFC vs PCC at step 2000: not measured yet." in text  # D-RFC has not reached step 2000
    precision = "bf16 autocast" if machine.bf16_is_fast(torch.device("cpu")) else "float32"
    assert "| D-RFC | 0 | 1000 (running) | " in text and f"| PCC | 0 | 2000 | {precision}, 2 threads | 0.75 |" in text
    assert "- PCC seed 0, " in text.split("## Earlier runs")[1] and "its checkpoint was lost" in text
    assert (out / "shallow_cifar.png").is_file()


def test_training_seconds_end_a_start_without_a_stop_at_the_next_start_or_now():
    from datetime import datetime, timezone

    from bench.shallow_cifar import training_seconds

    lines = ["segment start 2026-12-07T10:00:00Z load", "segment start 2026-12-07T10:10:00Z load",
             "segment stop 2026-12-07T10:20:00Z rc=0", "segment start 2026-12-07T11:00:00Z load"]  # fmt: skip
    assert training_seconds(lines, datetime(2026, 12, 7, 11, 5, tzinfo=timezone.utc)) == 25 * 60


@pytest.mark.parametrize(
    "argv, module",
    [(["speed", "--threads", "1", "2"], "bench.shallow_speed"),
     (["profile", "--steps", "5"], "bench.shallow_step_profile"),
     (["mnist", "run", "--objective", "cpc"], "bench.shallow_mnist"),
     (["cifar", "report"], "bench.shallow_cifar")],
)  # fmt: skip
def test_python_m_bench_shallow_runs_the_script_with_the_rest_of_its_command_line(monkeypatch, argv, module):
    """``python -m bench.shallow speed ARGS`` is ``python bench/shallow_speed.py ARGS``: the script runs as __main__
    and sees its own path and ARGS in sys.argv, so the command its results quote reruns it."""
    from bench import shallow

    seen = []
    monkeypatch.setattr(shallow.runpy, "run_module", lambda *args, **kwargs: seen.append((args, kwargs, sys.argv[:])))
    before = list(sys.argv)
    shallow.main(argv)
    script = str(Path(__file__).parents[1] / f"{module.replace('.', '/')}.py")
    assert seen == [((module,), {"run_name": "__main__", "alter_sys": True}, [script, *argv[1:]])]
    assert sys.argv == before


@pytest.mark.filterwarnings("ignore:.*found in sys.modules")  # the test module has imported the script already
def test_python_m_bench_shallow_passes_help_to_the_script_and_names_its_commands(capsys):
    from bench import shallow

    with pytest.raises(SystemExit) as done:
        shallow.main(["profile", "--help"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("usage: shallow_step_profile.py")
    with pytest.raises(SystemExit) as done:
        shallow.main(["timing"])
    assert done.value.code == 2 and "choose from 'speed', 'profile', 'mnist', 'cifar'" in capsys.readouterr().err
