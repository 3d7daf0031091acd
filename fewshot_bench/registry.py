"""One generic registry for methods and protocols.

Built-ins register with a decorator when their module under ``methods/`` or
``protocols/`` is imported; third-party packages add entries through the entry-point
groups ``fewshot_bench.methods`` / ``fewshot_bench.protocols``; a single file can be
added with `load_plugin_file`.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import pkgutil
import sys
import threading
import warnings
from pathlib import Path

from fewshot_bench.errors import UserError


class Registry:
    def __init__(self, kind: str, package: str, group: str, base: type | None = None):
        self.kind = kind  # "method" or "protocol", for messages
        self.package = package  # where the built-ins live
        self.group = group  # entry-point group for third parties
        self.base = base
        self._entries: dict[str, type] = {}
        self._loaded = False
        # another thread waits here until the loading thread has imported every plugin (it set
        # _loaded first, so its own nested lookups return at once)
        self._loading = threading.RLock()
        self.broken: dict[str, str] = {}  # plugin name -> one-line reason

    def register(self, name: str | None = None):
        """Class decorator: ``@METHODS.register("pixel_1nn")``."""

        def wrap(cls):
            key = name or cls.__name__
            if self.base is not None and not issubclass(cls, self.base):
                raise TypeError(f"{cls!r} must subclass {self.base.__name__} to be a {self.kind}")
            if key in self._entries and self._entries[key] is not cls:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            cls.name = key
            self._entries[key] = cls
            return cls

        return wrap

    def _load(self) -> None:
        with self._loading:
            if self._loaded:
                return
            self._loaded = True
            pkg = importlib.import_module(self.package)
            for mod in pkgutil.iter_modules(pkg.__path__):
                if not mod.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{mod.name}")
            for ep in importlib.metadata.entry_points(group=self.group):
                if ep.name in self._entries:
                    continue  # a built-in or an earlier plugin keeps its name
                try:
                    obj = ep.load()
                    if ep.name not in self._entries:  # the module may have used the decorator
                        self.register(ep.name)(obj)
                except Exception as exc:  # a broken plugin must not break the others
                    self.broken[ep.name] = f"{type(exc).__name__}: {exc}"
                    warnings.warn(f"{self.kind} plugin {ep.name!r} failed to load: {exc}", stacklevel=2)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def get(self, name: str) -> type:
        self._load()
        if name in self._entries:
            return self._entries[name]
        if name in self.broken:
            raise UserError(f"{self.kind} {name!r} failed to load: {self.broken[name]}")
        close = difflib.get_close_matches(name, self._entries, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown {self.kind} {name!r}.{hint} Valid: {', '.join(self.names())}")

    def items(self):
        self._load()
        return sorted(self._entries.items())


def load_plugin_file(path: str | Path) -> None:
    """Import a single Python file whose classes register themselves with the decorators."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"plugin file {path} not found; pass the path of a .py file to --plugin")
    spec = importlib.util.spec_from_file_location(f"fewshot_bench_plugin_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise UserError(f"plugin {path} failed to load: {type(exc).__name__}: {exc}") from exc
