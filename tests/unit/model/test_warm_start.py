"""Warm start (alpr.model.warm_start): fetching a model's checkpoints, refusing ones that do not fit, and a real tiny
training that starts from a model's weights (and resumes from its own work dir, not from the warm start)."""

import shutil

import pytest
import torch
from tiny_models import TINY_HP

from alpr.model.checkpoints import load_saved_config
from alpr.model.inference import ModelError
from alpr.model.training import Hyperparameters, build_config, build_plate_config, config_hash, train
from alpr.model.warm_start import WarmStart, check_fits, fetch_warm_start, set_load_from


def _parameters(path):
    """The trainable weights of a checkpoint (BatchNorm's running statistics move in any training step)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    state = state.get("state_dict", state)
    return {k: v for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def test_a_two_stage_model_names_both_checkpoints(tiny_two_stage_model_dir, tmp_path):
    warm = fetch_warm_start(str(tiny_two_stage_model_dir), tmp_path / "cache")
    assert warm == WarmStart(
        uri=str(tiny_two_stage_model_dir),
        reader=tiny_two_stage_model_dir / "model.pth",
        plate_detector=tiny_two_stage_model_dir / "plate_detector" / "model.pth",
    )


def test_a_one_detector_model_has_no_plate_detector(tiny_model_dir, tmp_path):
    warm = fetch_warm_start(f"file://{tiny_model_dir}", tmp_path / "cache")
    assert warm.reader.name == "model.pth" and warm.reader.is_file()
    assert warm.plate_detector is None


def test_what_is_not_a_model_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="load_from is empty"):
        fetch_warm_start("  ", tmp_path / "cache")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.pth").unlink()
    with pytest.raises(ModelError, match="model.pth missing"):
        fetch_warm_start(str(broken), tmp_path / "cache")
    with pytest.raises(ModelError, match="no selected model"):
        fetch_warm_start("latest", tmp_path / "cache", db_url=f"sqlite:///{tmp_path / 'empty.db'}")


def test_a_model_fits_its_own_config(tiny_model_dir):
    check_fits(load_saved_config(tiny_model_dir / "config.py").model, tiny_model_dir / "model.pth")


def test_a_checkpoint_of_another_design_is_refused_and_the_config_kept(tiny_two_stage_model_dir, tiny_coco, tmp_path):
    """The plate detector (widen 0.25, 2 classes) does not fit the reader's RTMDet-tiny: every mismatch is counted,
    the first are named with both shapes, and the config is left as it was."""
    cfg = build_config(tiny_coco, tmp_path / "w", Hyperparameters(**TINY_HP), num_workers=0)
    plate = tiny_two_stage_model_dir / "plate_detector" / "model.pth"
    with pytest.raises(ValueError, match=r"does not fit the config's model \(\d+ weights of another shape") as err:
        set_load_from(cfg, plate)
    assert str(plate) in str(err.value)
    assert "in the checkpoint, " in str(err.value) and "in the model" in str(err.value)
    assert cfg.load_from is None
    with pytest.raises(FileNotFoundError, match="no-such.pth"):
        check_fits(cfg.model, tmp_path / "no-such.pth")


def test_the_plate_detector_fits_the_plate_config(tiny_two_stage_model_dir, tiny_coco, tmp_path):
    hp = Hyperparameters(**{**TINY_HP, "plate_input_size": 256, "plate_epochs": 1})
    cfg = build_plate_config(tiny_coco, tmp_path / "p", hp, num_workers=0)
    set_load_from(cfg, tiny_two_stage_model_dir / "plate_detector" / "model.pth")
    assert cfg.load_from == str(tiny_two_stage_model_dir / "plate_detector" / "model.pth")


def test_training_starts_from_the_model_and_resumes_from_its_own_checkpoint(tiny_model_dir, tiny_coco, tmp_path):
    """At a learning rate too small to move them, one epoch ends where it started: at the model's weights with a
    warm start, far from them without. A re-run in the same work dir resumes its own checkpoint (mmengine would
    otherwise resume from ``load_from``, a weights-only file) and does not train again."""
    source = _parameters(tiny_model_dir / "model.pth")
    # Another seed than the model's: from random weights, training starts from other weights than the model's own
    # first ones (which its few tiny-lr warm-up iterations barely moved).
    hp = Hyperparameters(**{**TINY_HP, "epochs": 1, "lr": 1e-9, "seed": 1})
    cfg = build_config(tiny_coco, tmp_path / "warm", hp, num_workers=0)
    plain_hash = config_hash(cfg)
    set_load_from(cfg, tiny_model_dir / "model.pth")
    assert config_hash(cfg) == plain_hash  # the checkpoint's local path is not part of the model's configuration
    warm = _parameters(train(cfg).work_dir / "epoch_1.pth")
    assert warm.keys() == source.keys()
    assert max(float((warm[k] - source[k]).abs().max()) for k in source) < 1e-5

    cold_cfg = build_config(tiny_coco, tmp_path / "cold", hp, num_workers=0)
    cold = _parameters(train(cold_cfg).work_dir / "epoch_1.pth")
    assert max(float((cold[k] - source[k]).abs().max()) for k in source) > 1e-2

    again = build_config(tiny_coco, tmp_path / "warm", hp, num_workers=0)
    set_load_from(again, tiny_model_dir / "model.pth")
    before = (tmp_path / "warm" / "epoch_1.pth").stat().st_mtime_ns
    train(again)
    assert again.resume is True and again.load_from is None
    assert (tmp_path / "warm" / "epoch_1.pth").stat().st_mtime_ns == before
