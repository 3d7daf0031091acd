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


def test_a_second_thread_waits_for_the_first_to_finish_loading(monkeypatch):
    """Two reproduces in one process looked a name up while the other thread was still importing
    the plugins, and were told the name did not exist: now the second waits for the load."""
    import threading
    import time

    module = types.ModuleType("slow_plugin_mod")

    class Slow(Method):
        summary = "a plugin that takes a while to import"

    module.Slow = Slow
    monkeypatch.setitem(__import__("sys").modules, "slow_plugin_mod", module)
    entry = importlib.metadata.EntryPoint("slow_plugin", "slow_plugin_mod:Slow", "test.slow")
    original = entry.load
    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points([entry]))
    registry = Registry("method", "fewshot_bench.methods", "test.slow", Method)
    started = threading.Event()

    def slow_load(self):
        started.set()
        time.sleep(0.3)
        return original()

    monkeypatch.setattr(importlib.metadata.EntryPoint, "load", slow_load)
    first = threading.Thread(target=registry.names)
    first.start()
    assert started.wait(5)  # the first thread is inside the load now
    assert registry.get("slow_plugin") is Slow
    first.join()


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
