"""registry: names from entry points and plugins, lazy loading, clear errors."""

from __future__ import annotations

import logging
import sys

import pytest
from helpers import HELPERS_PATH, ToyRandom, ToyTask, write_plugin_distribution

from deeprobe_bench import api, registry


def test_unknown_name_lists_names_and_closest_match(toys):
    with pytest.raises(registry.UnknownNameError) as info:
        registry.get_method("toy-randon")
    err = info.value
    assert isinstance(err, api.UserError)
    assert err.suggestion == "toy-random"
    msg = str(err)
    assert "unknown method 'toy-randon'" in msg
    assert "did you mean 'toy-random'?" in msg
    assert "toy-diffmean" in msg and "toy-search" in msg
    assert "\n" not in msg


def test_unknown_task_and_model(toys):
    with pytest.raises(registry.UnknownNameError, match="did you mean 'toy'"):
        registry.get_task("tooy")
    with pytest.raises(registry.UnknownNameError, match="unknown model"):
        registry.get_model_spec("no-such-model-xyz")
    assert registry.find_model_spec("no-such-model-xyz") is None


def test_register_decorators_and_lookup():
    @registry.register_method
    class Mine(api.Method):
        name = "mine"
        description = "mine\nsecond line"

    assert registry.get_method("mine") is Mine
    entry = next(e for e in registry.list_entries("methods") if e.name == "mine")
    assert entry.description == "mine" and entry.supervision == "none" and not entry.broken


def test_register_rejects_wrong_objects():
    class NotAMethod:
        name = "nope"

    with pytest.raises(registry.PluginError, match="not a subclass of deeprobe_bench.api.Method"):
        registry.register_method(NotAMethod)

    class BadSupervision(api.Method):
        name = "bad-sup"
        supervision = "teacher"

    with pytest.raises(registry.PluginError, match="supervision 'teacher'"):
        registry.register_method(BadSupervision)
    with pytest.raises(registry.PluginError, match="no load"):
        registry.register_model(type("Spec", (), {"name": "m"})())


def test_plugin_file_auto_registers_classes_and_model():
    module = registry.load_plugin(str(HELPERS_PATH))
    assert registry.get_task("toy") is module.ToyTask
    assert registry.get_task("toy") is not ToyTask  # a separate module, outside any package
    assert registry.get_method("toy-random").__name__ == "ToyRandom"
    assert registry.get_model_spec("toy").load().d_model == 8
    assert registry.load_plugin(str(HELPERS_PATH)) is module  # loaded once


def test_auto_register_skips_imported_and_unnamed_classes(tmp_path):
    plugin = tmp_path / "plug.py"
    plugin.write_text(
        "from deeprobe_bench import api\n"
        "from helpers import ToyRandom  # imported, not defined here: not registered\n"
        "class Unnamed(api.Method):\n"
        "    pass\n"
        "class Named(api.Method):\n"
        "    name = 'named'\n"
    )
    registry.load_plugin(str(plugin))
    assert "named" in registry.names("methods")
    assert "toy-random" not in registry.names("methods")
    assert ToyRandom.name == "toy-random"


def test_plugin_module_by_name(tmp_path, monkeypatch):
    (tmp_path / "my_plugin_mod.py").write_text(
        "from deeprobe_bench import api\nclass T(api.Task):\n    name = 'modtask'\n    description = 'from a module'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.load_plugin("my_plugin_mod")
    assert registry.get_task("modtask").description == "from a module"
    sys.modules.pop("my_plugin_mod", None)


def test_missing_or_failing_plugin_file(tmp_path):
    with pytest.raises(registry.PluginError, match="does not exist"):
        registry.load_plugin(str(tmp_path / "nope.py"))
    bad = tmp_path / "bad_plugin.py"
    bad.write_text("raise ValueError('plugin exploded')\n")
    with pytest.raises(registry.PluginError, match=r"bad_plugin\.py.*ValueError: plugin exploded") as info:
        registry.load_plugin(str(bad))
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(registry.PluginError, match="ModuleNotFoundError"):
        registry.load_plugin("no_such_plugin_module_xyz")


def test_broken_entry_point_is_named_and_others_still_work(tmp_path, monkeypatch, caplog):
    monkeypatch.syspath_prepend(str(write_plugin_distribution(tmp_path / "site")))
    names = registry.names("methods")
    assert {"dist-method", "dist-broken"} <= set(names)

    # lazy: asking for the working one loads only it
    assert registry.get_method("dist-method").name == "dist-method"
    assert registry._scan("methods")["dist-broken"].obj is None
    assert registry._scan("methods")["dist-broken"].error is None

    # asking for exactly the broken name gives its import error, not "not found"
    with pytest.raises(registry.PluginError) as info:
        registry.get_method("dist-broken")
    msg = str(info.value)
    assert "dist-broken" in msg and "distribution 'toyplug'" in msg
    assert "No module named 'toyplug_missing_module'" in msg
    assert not isinstance(info.value, registry.UnknownNameError)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)

    # listing: the broken one is marked, the others are loaded
    with caplog.at_level(logging.WARNING, logger="deeprobe_bench"):
        entries = {e.name: e for e in registry.list_entries("methods")}
    assert entries["dist-broken"].broken and entries["dist-broken"].dist == "toyplug"
    assert not entries["dist-method"].broken
    assert entries["dist-method"].description.startswith("A method from an installed plugin")
    assert any("dist-broken" in r.getMessage() and "toyplug" in r.getMessage() for r in caplog.records)


def test_entry_point_of_the_wrong_kind(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    (root / "wrongkind.py").write_text("VALUE = 3\n")
    info = root / "wrongkind-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wrongkind\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[deeprobe_bench.tasks]\nwrong = wrongkind:VALUE\n")
    monkeypatch.syspath_prepend(str(root))
    with pytest.raises(registry.PluginError, match="not a subclass of deeprobe_bench.api.Task"):
        registry.get_task("wrong")


def test_registered_object_shadows_entry_point_only_when_allowed(tmp_path, monkeypatch, caplog):
    monkeypatch.syspath_prepend(str(write_plugin_distribution(tmp_path / "site")))

    class Shadow(ToyRandom):
        name = "dist-method"

    with pytest.raises(registry.PluginError, match="takes the name of .*'toyplug'.*--allow-override"):
        registry.register_method(Shadow)
    assert registry.provenance("methods", "dist-method")["kind"] == "distribution"
    registry.set_allow_override(True)
    registry.register_method(Shadow)
    with caplog.at_level(logging.WARNING, logger="deeprobe_bench"):
        assert registry.get_method("dist-method") is Shadow
    assert any("shadows" in r.getMessage() for r in caplog.records)
    prov = registry.provenance("methods", "dist-method")
    assert prov["kind"] == "plugin module" and "toyplug" in prov["overrides"] and len(prov["sha256"]) == 64


def test_bad_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        registry.names("widgets")
