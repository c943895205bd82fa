"""The package's layout, read from its source (no import runs): no import cycle between modules,
ray and vllm kept out of the pure parts, and the cluster layer kept out of learner/ and rollout/.

Every import counts, also one inside a function (a lazy import is still a dependency); only
imports under `if TYPE_CHECKING:` are left out.
"""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rlreason"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The modules `path` imports: rlreason modules (a name imported from a package counts as its
    submodule when there is one), and the top-level name of anything else."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    type_checking = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                     for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] != "rlreason":
                out.add(name.split(".")[0])
                continue
            while name not in modules and "." in name:  # rlreason.x.func -> rlreason.x
                name = name.rpartition(".")[0]
            if name != here:
                out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: imports_of(p, set(files)) for m, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the rlreason modules, as [a, b, ..., a]; None when there is none.
    A package's __init__ importing its own submodules is not counted (Python runs it first)."""
    edges = {m: {d for d in deps if d in graph and not m == d.rpartition(".")[0]} for m, deps in graph.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for d in sorted(edges[m]):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state and (cycle := visit(d)):
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_find_cycle_finds_one_and_only_one():
    """The checker itself, on hand-made graphs."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"p": {"p.x"}, "p.x": {"p"}}) is None  # a package importing its submodule: not a cycle
    assert find_cycle({"p": {"q"}, "q": {"p"}}) == ["p", "q", "p"]


def test_the_checker_reads_lazy_and_relative_imports(tmp_path, monkeypatch):
    """imports_of sees an import inside a function and a name imported from a package."""
    src = tmp_path / "rlreason" / "sub"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "a.py").write_text("import os\ndef f():\n    from rlreason.sub import b\n    import vllm\n")
    (src / "b.py").write_text("from . import a\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ray\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "rlreason")
    modules = {"rlreason.sub", "rlreason.sub.a", "rlreason.sub.b"}
    assert imports_of(src / "a.py", modules) == {"os", "rlreason.sub.b", "vllm"}
    assert imports_of(src / "b.py", modules) == {"rlreason.sub.a", "typing"}


def test_no_import_cycle_between_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


PURE = ("rlreason.algos", "rlreason.rewards", "rlreason.loop", "rlreason.types", "rlreason.sync")


@pytest.mark.parametrize("heavy", ["ray", "vllm"])
def test_pure_parts_never_import_ray_or_vllm(heavy):
    graph = import_graph()
    offenders = sorted(m for m, deps in graph.items() if m.startswith(PURE) and heavy in deps)
    assert offenders == [], f"{heavy} imported by {offenders}"


def test_learner_and_rollout_never_import_the_cluster_layer():
    graph = import_graph()
    offenders = sorted((m, d) for m, deps in graph.items() if m.startswith(("rlreason.learner", "rlreason.rollout"))
                       for d in deps if d.startswith("rlreason.cluster"))
    assert offenders == []


def test_only_the_cluster_layer_and_the_training_entry_import_ray():
    """Ray sits behind rlreason.cluster; rlreason.train (the entry) and a few start-up helpers
    that ask Ray for a node address or a cluster's resources import it lazily."""
    graph = import_graph()
    allowed = ("rlreason.cluster", "rlreason.train", "rlreason.weight_transfer", "rlreason.dryrun")
    offenders = sorted(m for m, deps in graph.items() if "ray" in deps and not m.startswith(allowed))
    assert offenders == []
