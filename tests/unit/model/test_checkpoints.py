"""trusted_checkpoint_loading (alpr.model.checkpoints): the torch switch is set inside the block only, and the
environment is put back as it was -- unset or set -- also when the block raises."""

import os

import pytest

from alpr.model.checkpoints import trusted_checkpoint_loading

KEY = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def test_set_inside_and_removed_after_when_it_was_unset(monkeypatch):
    monkeypatch.delenv(KEY, raising=False)
    with trusted_checkpoint_loading():
        assert os.environ[KEY] == "1"
    assert KEY not in os.environ


def test_previous_value_restored(monkeypatch):
    monkeypatch.setenv(KEY, "0")
    with trusted_checkpoint_loading():
        assert os.environ[KEY] == "1"
    assert os.environ[KEY] == "0"


@pytest.mark.parametrize("before", [None, "0", ""])
def test_restored_when_the_body_raises(monkeypatch, before):
    if before is None:
        monkeypatch.delenv(KEY, raising=False)
    else:
        monkeypatch.setenv(KEY, before)
    with pytest.raises(RuntimeError, match="boom"), trusted_checkpoint_loading():
        assert os.environ[KEY] == "1"
        raise RuntimeError("boom")
    assert os.environ.get(KEY) == before


def test_nested_blocks_restore_in_order(monkeypatch):
    monkeypatch.delenv(KEY, raising=False)
    with trusted_checkpoint_loading():
        with trusted_checkpoint_loading():
            assert os.environ[KEY] == "1"
        assert os.environ[KEY] == "1"  # the outer block still holds it
    assert KEY not in os.environ


def test_other_variables_untouched(monkeypatch):
    monkeypatch.delenv(KEY, raising=False)
    before = {k: v for k, v in os.environ.items() if k != KEY}
    with trusted_checkpoint_loading():
        assert {k: v for k, v in os.environ.items() if k != KEY} == before
    assert dict(os.environ) == before


@pytest.mark.filterwarnings("ignore:Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected")
def test_torch_loads_a_full_checkpoint_inside_the_block_only(tmp_path, monkeypatch):
    """What the switch is for: torch >= 2.6 loads weights-only by default and refuses numpy state."""
    torch = pytest.importorskip("torch")
    np = pytest.importorskip("numpy")
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    if (major, minor) < (2, 6):
        pytest.skip(f"torch {torch.__version__} still loads full pickles by default")
    monkeypatch.delenv(KEY, raising=False)
    path = tmp_path / "resume.pth"
    torch.save({"meta": {"seed": np.int64(7)}, "state": np.arange(3)}, path)
    with pytest.raises(Exception, match="[Ww]eights.only"):
        torch.load(path)
    with trusted_checkpoint_loading():
        loaded = torch.load(path)
    assert int(loaded["meta"]["seed"]) == 7 and loaded["state"].tolist() == [0, 1, 2]
    with pytest.raises(Exception, match="[Ww]eights.only"):
        torch.load(path)  # refused again after the block


def test_saved_config_naming_a_moved_module_still_loads(tmp_path):
    """A model trained before alpr.mmdet_plugins became alpr.model.plugins keeps loading."""
    import sys

    from alpr.model.checkpoints import MOVED_MODULES, load_saved_config

    path = tmp_path / "config.py"
    path.write_text('custom_imports = dict(imports=["alpr.mmdet_plugins"], allow_failed_imports=False)\nx = 1\n')
    cfg = load_saved_config(path)
    assert cfg.custom_imports["imports"] == [MOVED_MODULES["alpr.mmdet_plugins"]] == ["alpr.model.plugins"]
    assert cfg.x == 1 and "alpr.model.plugins" in sys.modules


def test_saved_config_errors_name_the_problem(tmp_path):
    from alpr.model.checkpoints import load_saved_config

    with pytest.raises(FileNotFoundError, match="nope.py"):
        load_saved_config(tmp_path / "nope.py")
    path = tmp_path / "config.py"
    path.write_text('custom_imports = dict(imports=["alpr.no_such_module"], allow_failed_imports=False)\n')
    with pytest.raises(ImportError):
        load_saved_config(path)
