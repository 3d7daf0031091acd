import importlib.metadata
import types

import pytest

from fewshot_bench.api import METHODS, Method
from fewshot_bench.errors import UserError
from fewshot_bench.registry import Registry, load_plugin_file


def test_unknown_method_suggests_the_closest_and_lists_valid():
    with pytest.raises(UserError) as err:
        METHODS.get("pixel_nn")
    assert "Did you mean 'pixel_1nn'?" in str(err.value) and "mhd" in str(err.value)


def test_duplicate_names_are_refused():
    registry = Registry("method", "fewshot_bench.methods", "none", Method)

    @registry.register("x")
    class A(Method):
        pass

    with pytest.raises(ValueError, match="registered twice"):
        @registry.register("x")
        class B(Method):
            pass


def test_registry_checks_the_base_class():
    with pytest.raises(TypeError, match="subclass Method"):
        METHODS.register("not_a_method")(object)


def fake_entry_points(entries):
    def entry_points(group=None):
        return [e for e in entries if e.group == group]
    return entry_points


def test_entry_point_plugins_load_and_broken_ones_are_reported(monkeypatch):
    module = types.ModuleType("fake_plugin_mod")

    class Plugin(Method):
        summary = "a plugin"

    module.Plugin = Plugin
    monkeypatch.setitem(__import__("sys").modules, "fake_plugin_mod", module)
    entries = [importlib.metadata.EntryPoint("good_plugin", "fake_plugin_mod:Plugin", "test.methods"),
               importlib.metadata.EntryPoint("bad_plugin", "no_such_module_xyz:Thing", "test.methods")]
    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points(entries))
    registry = Registry("method", "fewshot_bench.methods", "test.methods", Method)
    with pytest.warns(UserWarning, match="bad_plugin"):
        names = registry.names()
    assert names == ["good_plugin"]  # built-ins register in METHODS, not this fresh registry
    with pytest.raises(UserError, match="bad_plugin' failed to load"):
        registry.get("bad_plugin")


def test_plugin_file_registers_its_method(tmp_path, monkeypatch):
    METHODS.names()  # built-ins loaded; the plugin below lands in a copy that the test's end drops
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    path = tmp_path / "my_method.py"
    path.write_text(
        "import torch\n"
        "from fewshot_bench.api import METHODS, Method\n"
        "@METHODS.register('file_plugin_test')\n"
        "class Mine(Method):\n"
        "    summary = 'test'\n"
        "    def score(self, q, s):\n"
        "        return -torch.cdist(q.flatten(1), s.flatten(1))\n")
    load_plugin_file(path)
    assert "file_plugin_test" in METHODS.names()


def test_a_test_plugin_does_not_outlive_its_test():
    assert "file_plugin_test" not in METHODS.names()


def test_broken_plugin_file_is_one_user_error(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(UserError, match="broken.py failed to load: RuntimeError: boom"):
        load_plugin_file(path)
