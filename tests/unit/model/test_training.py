"""Real mmdetection training of a tiny model on the CPU (seconds), config building and resume."""

import ast
import dataclasses
import io
import json
import math
import tokenize

import pytest
from tiny_models import TINY_HP

from alpr import spec
from alpr.defaults import TRAINING_DEFAULTS
from alpr.model.training import (
    CONFIG_DIR,
    DEFAULT_CONFIG,
    FINAL_LR_FACTOR,
    PLATE_CONFIG,
    Hyperparameters,
    build_config,
    build_plate_config,
    config_hash,
    train,
)


def test_hyperparameters_are_validated():
    with pytest.raises(ValueError, match="input_size=100"):
        Hyperparameters(input_size=100)
    with pytest.raises(ValueError, match="plate_input_size=650"):
        Hyperparameters(plate_input_size=650)
    with pytest.raises(ValueError, match="plate_input_size=256"):
        Hyperparameters(input_size=320, plate_input_size=256)  # the plate detector's input is the larger one
    with pytest.raises(ValueError, match="plate_epochs=0"):
        Hyperparameters(plate_epochs=0)
    with pytest.raises(ValueError, match="lr=0"):
        Hyperparameters(lr=0)
    with pytest.raises(ValueError, match="epochs=0"):
        Hyperparameters(epochs=0)


def test_hyperparameters_default_to_the_pipelines_defaults():
    names = [f.name for f in dataclasses.fields(Hyperparameters)]
    assert set(names) <= set(TRAINING_DEFAULTS)  # every hyperparameter is a pipeline parameter
    assert dataclasses.asdict(Hyperparameters()) == {k: TRAINING_DEFAULTS[k] for k in names}
    assert TRAINING_DEFAULTS.config == DEFAULT_CONFIG


def test_build_config_applies_hyperparameters(tiny_coco, tmp_path):
    hp = Hyperparameters(lr=0.01, epochs=7, batch_size=3, input_size=256, weight_decay=0.01, val_interval=3, seed=5)
    cfg = build_config(tiny_coco, tmp_path / "w", hp)
    assert cfg.optim_wrapper.optimizer.lr == 0.01 and cfg.optim_wrapper.optimizer.weight_decay == 0.01
    assert cfg.train_cfg.max_epochs == 7 and cfg.train_cfg.val_interval == 3
    assert cfg.train_dataloader.batch_size == 3
    assert cfg.model.bbox_head.num_classes == 17
    # The whole schedule follows the Hyperparameters given (the configs hold none of it).
    warmup, cosine = cfg.param_scheduler
    assert (cosine.begin, cosine.end, cosine.T_max) == (1, 7, 6)
    assert cosine.eta_min == pytest.approx(0.01 * FINAL_LR_FACTOR)
    assert cfg.default_hooks.checkpoint.interval == 3 and cfg.randomness.seed == 5
    sizes = [
        step.get("scale") or step.get("crop_size") or step.get("size")
        for step in cfg.train_dataloader.dataset.pipeline + cfg.val_dataloader.dataset.pipeline
        if step["type"] in ("Resize", "RandomResize", "RandomCrop", "Pad") and not step.get("size_divisor")
    ]
    assert sizes and all(tuple(s) == (256, 256) for s in sizes)
    assert all("Flip" not in step["type"] for step in cfg.train_dataloader.dataset.pipeline)
    assert cfg.val_evaluator[0]["ann_file"].endswith("annotations/val.json")
    assert cfg.default_hooks.checkpoint.save_best == "plate/eir"
    # The hash ignores the work dir but not the hyperparameters.
    same = build_config(tiny_coco, tmp_path / "elsewhere", hp)
    other = build_config(tiny_coco, tmp_path / "w", Hyperparameters(lr=0.02))
    assert config_hash(cfg) == config_hash(same) != config_hash(other)


def test_build_config_caps_the_validation_interval_at_the_epochs(tiny_coco, tmp_path):
    cfg = build_config(tiny_coco, tmp_path / "w", Hyperparameters(epochs=2, val_interval=5))
    assert cfg.train_cfg.max_epochs == 2 and cfg.train_cfg.val_interval == cfg.default_hooks.checkpoint.interval == 2


def test_the_merged_config_has_the_classes_of_the_spec(tiny_coco, tmp_path):
    """The classes come from alpr.spec.CLASSES (build_config), and mmdetection's dataset agrees."""
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules

    cfg = build_config(tiny_coco, tmp_path / "w", Hyperparameters())
    assert cfg.model.bbox_head.num_classes == len(spec.CLASSES) == 17
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        assert tuple(loader.dataset.metainfo["classes"]) == spec.CLASSES
    register_all_modules()
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    assert tuple(dataset.metainfo["classes"]) == spec.CLASSES
    assert dataset.cat_ids == [spec.class_id(c) + 1 for c in spec.CLASSES]  # COCO ids of alpr.data.coco


@pytest.mark.parametrize(
    "leaf", [DEFAULT_CONFIG, PLATE_CONFIG, "rtmdet_tiny_reader_alpr.py", "rtmdet_tiny_zoom_reader_alpr.py"]
)
def test_the_configs_leave_classes_and_pipeline_parameters_to_build_config(leaf):
    """configs/ type neither the classes nor a value that build_config always sets (one source of truth)."""
    from mmengine.config import Config

    raw = Config.fromfile(str(CONFIG_DIR / leaf))
    assert not {"classes", "metainfo", "num_classes", "data_root", "input_size", "randomness"} & set(raw)
    assert "num_classes" not in raw.model.bbox_head
    for loader in (raw.train_dataloader, raw.val_dataloader, raw.test_dataloader):
        assert not {"num_workers", "persistent_workers"} & set(loader)
        assert not {"metainfo", "data_root", "ann_file"} & set(loader.dataset)
        assert all(not {"scale", "crop_size", "size"} & set(step) for step in loader.dataset.pipeline)
    assert "batch_size" not in raw.train_dataloader
    assert not {"max_epochs", "val_interval"} & set(raw.train_cfg)
    assert not {"lr", "weight_decay"} & set(raw.optim_wrapper.optimizer)
    assert not {"begin", "end", "T_max", "eta_min"} & set(raw.param_scheduler[1])
    assert not {"interval", "save_best", "rule"} & set(raw.default_hooks.checkpoint)
    assert "name" not in raw.visualizer
    assert all("ann_file" not in metric for metric in (*raw.val_evaluator, *raw.test_evaluator))
    for path in CONFIG_DIR.rglob("*.py"):  # comments aside, no class name and no num_classes in any config file
        tokens = list(tokenize.generate_tokens(io.StringIO(path.read_text()).readline))
        strings = {ast.literal_eval(t.string) for t in tokens if t.type == tokenize.STRING}
        assert not strings & set(spec.CLASSES), path
        assert "num_classes" not in {t.string for t in tokens if t.type == tokenize.NAME}, path


def test_build_config_errors_name_the_missing_file(tmp_path, tiny_coco):
    with pytest.raises(FileNotFoundError, match="train.json"):
        build_config(tmp_path, tmp_path / "w", Hyperparameters())
    with pytest.raises(FileNotFoundError, match="nope.py"):
        build_config(tiny_coco, tmp_path / "w", Hyperparameters(), config="nope.py")
    assert (CONFIG_DIR / DEFAULT_CONFIG).is_file()


def test_tiny_training_produces_checkpoints_config_and_tensorboard(tiny_training):
    names = [p.name for p in tiny_training.checkpoints]
    assert "epoch_2.pth" in names and "epoch_1.pth" in names
    assert any(n.startswith("best_plate_eir") for n in names)
    text = tiny_training.config_path.read_text()
    assert "num_classes=17" in text.replace(" ", "")
    assert tiny_training.tensorboard_dir is not None
    assert list(tiny_training.tensorboard_dir.glob("events.out.tfevents.*"))
    for key in ("coco/bbox_mAP", "plate/eir", "plate/char_accuracy"):
        assert key in tiny_training.val_metrics
        value = tiny_training.val_metrics[key]
        assert math.isnan(value) or 0.0 <= value <= 1.0 or key == "plate/char_accuracy"
    assert len(tiny_training.config_hash) == 64


def test_training_resumes_from_its_last_checkpoint(tiny_coco, tmp_path):
    hp = Hyperparameters(**{**TINY_HP, "epochs": 1})
    first = train(build_config(tiny_coco, tmp_path / "w", hp, num_workers=0))
    assert [p.name for p in first.checkpoints if p.name.startswith("epoch_")] == ["epoch_1.pth"]
    # Re-run with a longer schedule (as after a kill): continues at epoch 2, does not start again.
    hp2 = Hyperparameters(**{**TINY_HP, "epochs": 2})
    cfg = build_config(tiny_coco, tmp_path / "w", hp2, num_workers=0)
    second = train(cfg)
    assert cfg.resume is True
    assert "epoch_2.pth" in [p.name for p in second.checkpoints]


def test_timed_snapshots_are_loadable_weights_on_a_training_clock(tiny_training, tiny_coco):
    """TimedSnapshotHook (in the tiny training's config): weights-only snapshots with increasing training time,
    the last one after the last iteration, each loadable with weights_only=True and evaluable."""
    import json

    import torch

    from alpr.model.evaluation import evaluate_checkpoint

    snap_dir = tiny_training.work_dir / "snapshots"
    records = json.loads((snap_dir / "snapshots.json").read_text())
    assert len(records) >= 2
    seconds = [r["train_seconds"] for r in records]
    assert seconds == sorted(seconds) and seconds[0] > 0
    n_train = len(json.loads((tiny_coco / "annotations" / "train.json").read_text())["images"])
    epochs, batch = TINY_HP["epochs"], TINY_HP["batch_size"]
    iters = [r["iter"] for r in records]
    assert iters == sorted(iters) and iters[-1] == epochs * math.ceil(n_train / batch)
    assert records[-1]["images"] == epochs * n_train
    ckpt = torch.load(snap_dir / records[-1]["file"], map_location="cpu", weights_only=True)
    assert set(ckpt) == {"state_dict", "meta"} and ckpt["meta"]["iter"] == iters[-1]
    metrics = evaluate_checkpoint(tiny_training.config_path, snap_dir / records[-1]["file"], tiny_coco, "val")
    assert {"eir", "mAP"} <= set(metrics)


def test_timed_snapshot_hook_rejects_a_bad_interval():
    from alpr.model.plugins import TimedSnapshotHook

    with pytest.raises(ValueError, match="interval_s"):
        TimedSnapshotHook(interval_s=0, out_dir="x")


def test_build_plate_config_trains_plates_on_crops_at_the_detectors_scale(tiny_coco, tmp_path):
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules

    hp = Hyperparameters(input_size=320, plate_input_size=640, plate_epochs=5, lr=0.002, seed=3)
    cfg = build_plate_config(tiny_coco, tmp_path / "w", hp)
    assert cfg.model.bbox_head.num_classes == 2
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        assert tuple(loader.dataset.metainfo["classes"]) == spec.PLATE_LABELS
    steps = {step["type"]: step for step in cfg.train_dataloader.dataset.pipeline}
    assert tuple(steps["RandomResize"]["scale"]) == (640, 640)  # frames resized around the detector's input
    assert tuple(steps["RandomCrop"]["crop_size"]) == tuple(steps["Pad"]["size"]) == (320, 320)  # trained on crops
    assert [tuple(s["scale"]) for s in cfg.val_dataloader.dataset.pipeline if s["type"] == "Resize"] == [(640, 640)]
    assert cfg.train_cfg.max_epochs == 5 and cfg.optim_wrapper.optimizer.lr == 0.002 and cfg.randomness.seed == 3
    assert cfg.default_hooks.checkpoint.save_best == "coco/bbox_mAP_50"
    assert [m["type"] for m in cfg.val_evaluator] == ["CocoMetric"]  # no characters: no plate reading metric
    assert cfg.model.backbone.widen_factor < _widen(DEFAULT_CONFIG)  # a cheaper network than the reader's
    assert cfg.model.test_cfg.nms.class_agnostic  # one plate, one crop: never both layouts of the same plate
    register_all_modules()
    dataset = DATASETS.build(cfg.val_dataloader.dataset)  # mmdetection keeps the plate annotations only
    labels = [i["bbox_label"] for k in range(len(dataset)) for i in dataset.get_data_info(k)["instances"]]
    coco = json.loads((tiny_coco / "annotations" / "val.json").read_text())
    assert set(labels) <= {0, 1}
    assert len(labels) == sum(len(img["plates"]) for img in coco["images"])
    with pytest.raises(ValueError, match="plate_input_size is 0"):
        build_plate_config(tiny_coco, tmp_path / "w", Hyperparameters(plate_input_size=0))


def _widen(leaf):
    from mmengine.config import Config

    return Config.fromfile(str(CONFIG_DIR / leaf)).model.backbone.widen_factor


def test_tiny_plate_training_predicts_the_two_plate_classes(tiny_plate_training):
    import torch

    assert tiny_plate_training.checkpoints
    ckpt = torch.load(str(tiny_plate_training.checkpoints[-1]), map_location="cpu", weights_only=False)
    assert tuple(ckpt["meta"]["dataset_meta"]["classes"]) == spec.PLATE_LABELS
    # One epoch finds no plate above the score floor, so COCO may report nothing; any value it reports is COCO's.
    assert set(tiny_plate_training.val_metrics) <= {
        "coco/bbox_mAP",
        "coco/bbox_mAP_50",
        "coco/bbox_mAP_75",
        "coco/bbox_mAP_s",
        "coco/bbox_mAP_m",
        "coco/bbox_mAP_l",
    }
