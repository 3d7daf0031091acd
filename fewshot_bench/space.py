"""Search spaces for ``bench tune``: what a method declares beside its presets (``search_space``),
and how a space is narrowed or widened from the command line or a TOML file.

A ``Param`` is one option's range. Options holding one value per layer (Koch tuned learning rate,
momentum and L2 per layer, filters and kernel sizes per conv layer) say which layers with ``per``:

- ``per="layer"``: one value per layer with its own SGD settings (twin layers, fc layer, head)
- ``per="twin"``: one value per twin layer (conv layers, or the MLP's hidden layers)
- ``per=""``: one value (a tuple option then gets that value alone)
"""
from __future__ import annotations

from dataclasses import dataclass

from fewshot_bench.errors import UserError

KINDS = ("log", "float", "int", "choice")


@dataclass(frozen=True)
class Param:
    kind: str  # "log" (log-uniform float), "float", "int" (with ``step``), "choice"
    low: float | None = None
    high: float | None = None
    step: float | None = None  # int: multiples of it from ``low``
    choices: tuple = ()
    per: str = ""  # "", "layer" or "twin": see the module docstring

    def __post_init__(self):
        if self.kind not in KINDS:
            raise UserError(f"a search range's kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "choice":
            if not self.choices:
                raise UserError("a choice range needs at least one value, e.g. choice:3|5")
        elif self.low is None or self.high is None or not self.low <= self.high:
            raise UserError(f"a {self.kind} range needs low <= high, got {self.low}..{self.high}")
        elif self.kind == "log" and self.low <= 0:
            raise UserError(f"a log range needs low > 0, got {self.low}")
        if self.per not in ("", "layer", "twin"):
            raise UserError(f"per must be '', 'layer' or 'twin', got {self.per!r}")

    def suggest(self, trial, name: str):
        """One value from ``trial`` (an Optuna trial) for the parameter ``name``."""
        if self.kind == "log":
            return trial.suggest_float(name, self.low, self.high, log=True)
        if self.kind == "float":
            return trial.suggest_float(name, self.low, self.high)
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1))
        return trial.suggest_categorical(name, list(self.choices))

    def text(self) -> str:
        """The range as ``parse_param`` reads it (``log:0.0001:0.1``, ``choice:3|5``), then per-layer."""
        body = "choice:" + "|".join(str(c) for c in self.choices) if self.kind == "choice" else \
            f"{self.kind}:{_short(self.low)}:{_short(self.high)}" + (f":{_short(self.step)}" if self.step else "")
        return body + (f" per {self.per}" if self.per else "")


def _short(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def parse_param(text: str, per: str = "") -> Param | None:
    """``log:1e-4:1e-1``, ``float:0:0.99``, ``int:16:256:16``, ``choice:3|5|7`` or ``off`` (None:
    not tuned), optionally followed by `` per layer`` or `` per twin``; else ``per`` (the declared
    range's of the same name, see ``Param``)."""
    text, _, stated = text.strip().partition(" per ")
    per = stated.strip() or per
    if text == "off":
        return None
    kind, _, rest = text.partition(":")
    try:
        if kind == "choice":
            return Param("choice", choices=tuple(_number(v) for v in rest.split("|") if v), per=per)
        parts = [float(v) for v in rest.split(":")]
        if kind not in ("log", "float", "int") or len(parts) not in (2, 3) or (len(parts) == 3 and kind != "int"):
            raise ValueError
        return Param(kind, *parts, per=per)
    except ValueError:
        raise UserError(f"search range {text!r} not understood; write log:LOW:HIGH, float:LOW:HIGH, "
                        "int:LOW:HIGH[:STEP], choice:A|B|C or off") from None


def _number(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def adjusted(space: dict[str, Param], changes: dict[str, str], fields: list[str]) -> dict[str, Param]:
    """``space`` with ranges replaced, added or switched off (``changes``: name -> range text);
    a name that is not an option of the method's config is refused with the valid ones."""
    out = dict(space)
    for name, text in changes.items():
        if name not in fields:
            raise UserError(f"--space {name}: not an option of this method; valid: {', '.join(fields)}")
        declared = space.get(name)
        param = parse_param(str(text), declared.per if declared else "")
        if param is None:
            out.pop(name, None)
        else:
            out[name] = param
    if not out:
        raise UserError("the search space is empty: every range was switched off")
    return out


def layer_count(config, per: str) -> int:
    """How many values a ``per`` range takes for this config (see ``Param``)."""
    if per == "twin":
        return len(config.channels) if config.network == "conv" else len(config.hidden)
    return config.n_layers


def suggest_options(trial, space: dict[str, Param], config) -> dict:
    """The options one Optuna trial tries: each range suggested once, or once per layer (Optuna
    names ``lr.0``, ``lr.1``, ...), tuple options built from their values."""
    options = {}
    for name, param in space.items():
        if param.per:
            options[name] = tuple(param.suggest(trial, f"{name}.{i}") for i in range(layer_count(config, param.per)))
        else:
            value = param.suggest(trial, name)
            options[name] = (value,) if isinstance(getattr(config, name, None), tuple) else value
    return options

