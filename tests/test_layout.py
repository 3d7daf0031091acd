"""The package's floors: every import points down (or stays on its floor), and no module imports
itself back through others, top-level or inside a function."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"fewshot_bench": ROOT / "fewshot_bench", "fewshot_bench.methods": ROOT / "methods",
           "fewshot_bench.protocols": ROOT / "protocols"}
# what each floor may import besides itself; the core (contracts, registry, configs, errors,
# statistics, records, keys) imports nothing above it
BELOW = {
    "core": set(),
    "data": {"core"},
    "learning": {"core", "data"},
    "tables": {"core"},
    "protocols": {"core", "data"},
    "methods": {"core", "data", "learning"},
    "experiments": {"core", "data", "learning", "tables"},
    "pictures": {"core", "data", "tables"},
    "cli": {"core", "data", "learning", "tables", "experiments", "pictures"},
    # the package's __init__, its front door: it hands out the Python API on first use
    "front": {"core", "experiments"},
}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def floor(module: str) -> str:
    if module == "fewshot_bench":
        return "front"
    parts = module.split(".")
    if len(parts) > 2 and parts[1] in BELOW or (len(parts) == 2 and parts[1] in BELOW):
        return parts[1]
    return "core"


def imports(module: str, path: Path, known) -> set[str]:
    """The project modules ``module`` imports anywhere in its file (resolved to known module names)."""
    out = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and name != "fewshot_bench":
                out.add(name)
    return out


GRAPH = {m: imports(m, p, set(modules())) for m, p in modules().items()}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down_the_floors(module):
    mine = floor(module)
    upward = sorted(m for m in GRAPH[module] if floor(m) != mine and floor(m) not in BELOW[mine])
    assert not upward, f"{module} ({mine}) imports {upward} from floors above or beside it"


def test_no_module_imports_itself_back():
    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in GRAPH[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen
    loops = sorted(m for m in GRAPH if m in reach(m))
    assert not loops, f"import loops through {loops}"


def test_every_floor_is_known():
    assert {floor(m) for m in GRAPH} <= set(BELOW)
