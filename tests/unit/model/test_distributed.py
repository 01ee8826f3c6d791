"""Distributed data-parallel training (alpr.model.distributed): the scale, what it changes in a config, the torchrun
command, and real two-process trainings on the CPU (gloo) on tiny data: results written once, by rank 0; a killed
worker's group restarts and resumes from the last checkpoint."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tiny_models import TINY_HP

from alpr.model import distributed
from alpr.model.distributed import RESULT_FILE, TrainScale, scale_config, torchrun_command
from alpr.model.training import FINAL_LR_FACTOR, Hyperparameters, build_config

# --- the scale -------------------------------------------------------------------------------------------------------


def test_the_default_scale_is_one_process_in_this_one():
    scale = TrainScale()
    assert (scale.workers, scale.gpus_per_worker, scale.world_size, scale.distributed) == (1, 0, 1, False)


@pytest.mark.parametrize(
    ("workers", "gpus", "procs", "world"),
    [(2, 0, 1, 2), (1, 1, 1, 1), (1, 4, 4, 4), (3, 2, 2, 6)],
)
def test_one_process_per_gpu_or_one_on_the_cpu(workers, gpus, procs, world):
    scale = TrainScale(workers=workers, gpus_per_worker=gpus)
    assert (scale.procs_per_worker, scale.world_size, scale.distributed) == (procs, world, world > 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, r"train_workers=0 \(at least 1\)"),
        ({"gpus_per_worker": -1}, r"train_gpus_per_worker=-1 \(0 or more\)"),
        ({"workers": 0, "gpus_per_worker": -2}, "train_workers=0 .*train_gpus_per_worker=-2"),
        ({"workers": 1.5}, "train_workers=1.5"),
    ],
)
def test_a_bad_scale_names_the_parameter(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainScale(**kwargs)


def test_the_scale_of_a_torchrun_group_from_its_environment(monkeypatch):
    for name in distributed.TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    assert TrainScale.from_environment() == TrainScale()
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    # no CUDA here: four one-process CPU workers (the same world size as two nodes of two processes)
    assert TrainScale.from_environment() == TrainScale(workers=4, gpus_per_worker=0)
    assert distributed.under_torchrun() and not distributed.is_rank_zero()


# --- the config ------------------------------------------------------------------------------------------------------


@pytest.fixture
def cfg(tiny_coco, tmp_path):
    return build_config(tiny_coco, tmp_path / "work", Hyperparameters(**TINY_HP), num_workers=0)


def test_one_process_changes_nothing(cfg):
    before = cfg.pretty_text
    assert scale_config(cfg, TrainScale()) is cfg
    assert cfg.pretty_text == before
    assert scale_config(cfg, TrainScale(gpus_per_worker=1)).pretty_text == before


def test_two_cpu_processes_scale_the_learning_rate_and_seed_per_rank(cfg):
    lr = cfg.optim_wrapper.optimizer.lr
    scale_config(cfg, TrainScale(workers=2))
    assert cfg.launcher == "pytorch"
    # mmengine's linear rule: lr * (world_size * batch) / base_batch_size = lr * 2; the optimizer keeps the base
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=TINY_HP["batch_size"])
    assert cfg.optim_wrapper.optimizer.lr == lr
    cosine = [s for s in cfg.param_scheduler if s.type == "CosineAnnealingLR"][0]
    assert "eta_min" not in cosine and cosine.eta_min_ratio == FINAL_LR_FACTOR
    assert cfg.randomness == dict(seed=TINY_HP.get("seed", 0), diff_rank_seed=True)
    assert cfg.env_cfg.dist_cfg == dict(backend="gloo")
    assert "sync_bn" not in cfg and cfg.model.use_syncbn is False  # PyTorch's SyncBatchNorm runs on GPUs only
    assert cfg.model_wrapper_cfg == dict(type="CPUDistributedDataParallel")
    assert {m["collect_device"] for m in [*cfg.val_evaluator, *cfg.test_evaluator]} == {"gpu"}


def test_gpus_get_nccl_and_sync_bn(cfg):
    scale_config(cfg, TrainScale(workers=2, gpus_per_worker=2))
    assert cfg.sync_bn == "torch"
    assert cfg.env_cfg.dist_cfg == dict(backend="nccl")


def test_torchrun_command_here_and_on_a_trainjob_node(tmp_path):
    config = tmp_path / "distributed_config.py"
    local = torchrun_command(config, TrainScale(workers=2, gpus_per_worker=0), standalone=True, max_restarts=2)
    assert local[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in local and "--nproc-per-node=2" in local and "--max-restarts=2" in local
    assert local[-3:] == ["-m", "alpr.model.distributed", str(config)]
    node = torchrun_command(config, TrainScale(workers=4, gpus_per_worker=2), standalone=False, python="python")
    # the node count, rank, processes per node and rendezvous come from the Trainer's PET_* environment
    assert node == [
        "python",
        "-m",
        "torch.distributed.run",
        "--max-restarts=1",
        "-m",
        "alpr.model.distributed",
        str(config),
    ]


def test_the_entry_point_refuses_to_run_outside_torchrun(tmp_path, monkeypatch):
    for name in distributed.TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "c.py"
    config.write_text("x = 1\n")
    with pytest.raises(RuntimeError, match="start it with torchrun"):
        distributed.main([str(config)])
    with pytest.raises(SystemExit) as exc:
        distributed.main([str(tmp_path / "missing.py")])
    assert exc.value.code == 2


def test_collect_result_without_rank_zero_result_says_so(cfg):
    Path(cfg.work_dir).mkdir(parents=True)
    with pytest.raises(RuntimeError, match=f"{RESULT_FILE} missing"):
        distributed.collect_result(cfg)


# --- real two-process trainings (gloo, CPU) ---------------------------------------------------------------------------


def _events(folder: Path) -> list[Path]:
    return sorted(folder.rglob("events.out.tfevents.*"))


@pytest.mark.slow
def test_two_processes_train_and_rank_zero_alone_writes(cfg, capfd):
    result = distributed.run_local(cfg, TrainScale(workers=2), max_restarts=0)
    out = capfd.readouterr()
    work = Path(cfg.work_dir)
    names = sorted(p.name for p in result.checkpoints)
    assert "epoch_1.pth" in names and "epoch_2.pth" in names
    assert any(n.startswith("best_") for n in names)
    # one TensorBoard event file and one log folder: the visualizer and the logger wrote on rank 0 only
    assert len(_events(work)) == 1 and result.tensorboard_dir is not None
    assert len([p for p in work.iterdir() if p.is_dir() and (p / "vis_data").is_dir()]) == 1
    assert not list(work.rglob("*.tmp"))
    assert json.loads((work / RESULT_FILE).read_text())["val_metrics"] == result.val_metrics
    assert {"eir", "plate_precision", "char_accuracy"} <= {k.split("/")[-1] for k in result.val_metrics}
    # the learning rate was scaled for the total batch of 2 x 4 images
    assert "Scaling the original LR by 2.0" in out.out + out.err
    import torch

    state = torch.load(work / "epoch_1.pth", map_location="cpu", weights_only=False)
    assert state["optimizer"]["param_groups"][0]["initial_lr"] == pytest.approx(2 * TINY_HP["lr"])
    # the processes trained the scaled config; the result's merged config is the one-process one, which Evaluate,
    # Test and the model server load (a pytorch launcher there would wait for a process group)
    assert "launcher = 'pytorch'" in (work / "distributed_config.py").read_text()
    assert "launcher = 'pytorch'" not in result.config_path.read_text()
    assert "launcher" not in cfg


def _workers(pid: int) -> list[int]:
    """The training processes torchrun ``pid`` started (not its other helpers), oldest first."""
    import psutil

    found = []
    for child in psutil.Process(pid).children():
        try:
            if "alpr.model.distributed" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return sorted(found)


@pytest.mark.slow
def test_a_killed_worker_restarts_the_group_which_resumes_from_the_last_checkpoint(tiny_coco, tmp_path, capfd):
    hp = Hyperparameters(**{**TINY_HP, "epochs": 3})
    cfg = build_config(tiny_coco, tmp_path / "work", hp, num_workers=0)
    config_path = distributed.prepare_config(cfg, TrainScale(workers=2))
    command = torchrun_command(config_path, TrainScale(workers=2), standalone=True, max_restarts=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, env=env)
    killed: list[int] = []

    def kill_a_worker_after_the_first_checkpoint() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if (Path(cfg.work_dir) / "epoch_1.pth").is_file():
                workers = _workers(proc.pid)
                if len(workers) >= 2:
                    time.sleep(0.5)
                    os.kill(workers[-1], signal.SIGKILL)
                    killed.append(workers[-1])
                    return
            time.sleep(0.2)

    watcher = threading.Thread(target=kill_a_worker_after_the_first_checkpoint)
    watcher.start()
    assert proc.wait(timeout=900) == 0
    watcher.join()
    out = capfd.readouterr()
    text = out.out + out.err
    assert killed, "no worker was killed: the training ended before its first checkpoint was seen"
    # the new round resumed from the first epoch's checkpoint (mmengine's log), on both ranks (ours)
    assert "resumed epoch: 1" in text
    assert text.count(f"resuming from {Path(cfg.work_dir) / 'epoch_1.pth'}") == 2
    result = distributed.collect_result(cfg)
    assert "epoch_3.pth" in {p.name for p in result.checkpoints}
    state = __import__("torch").load(Path(cfg.work_dir) / "epoch_3.pth", map_location="cpu", weights_only=False)
    assert state["meta"]["epoch"] == 3
