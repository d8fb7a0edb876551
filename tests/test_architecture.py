"""The package graph: imports run one way, the benchmark package stands alone, each concept is defined once.

`python tests/test_architecture.py` prints which module imports which (the graph these tests read).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cogito_lib"

# The rooms from the bottom up: a module may import its own room and the rooms below it, never one above.
# `__main__` modules are entry points: they sit on top of everything.
RANKS = {
    "config": 0, "io": 0, "layout": 0, "env": 0, "metrics": 0, "progress": 0, "mmar": 0,
    "world": 1, "sources": 1,
    "models": 2, "plots": 2, "exports": 2, "recipes": 2,
    "judges": 3, "widgets": 3,
    "pipe": 4,
    "train": 5,
    "base_model": 6, "distill": 6,
    "evaluate": 7,
    "checks": 8, "notebook": 8, "run": 8, "site": 8, "solutions": 8,
}
# The one arrow out of the benchmark package: its command line plugs in the kit's OpenAI-compatible rubric judge.
MMAR_EXCEPTIONS = {("mmar.cli", "judges")}
STAGE_FOLDER = re.compile(r"\b0[0-7]-[a-z]+(?:-[a-z]+)*\b")


def modules() -> dict[str, Path]:
    """{dotted name without `cogito_lib.`: file} for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The kit modules `name` imports anywhere in its file (functions included): `from X import sub` counts the
    submodule, `from X import thing` counts X."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.startswith("cogito_lib")]
            found.update(t.removeprefix("cogito_lib").lstrip(".") for t in targets)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if name else []
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("cogito_lib"):
                module = node.module.removeprefix("cogito_lib").lstrip(".")
            else:
                continue
            subs = [f"{module}.{a.name}".lstrip(".") for a in node.names if f"{module}.{a.name}".lstrip(".") in known]
            found.update(subs)
            if len(subs) < len(node.names):
                found.add(module)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def room(module: str) -> str:
    return module.split(".")[0]


def test_there_is_no_import_cycle_inside_the_package():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_every_room_has_a_rank_and_imports_run_downwards_only():
    edges = graph()
    unranked = sorted({room(m) for m in edges if m} - set(RANKS))
    assert not unranked, f"add these rooms to RANKS: {unranked}"
    upward = [(a, b) for a, targets in edges.items() if a and not a.endswith("__main__") for b in targets
              if b and RANKS[room(b)] > RANKS[room(a)] and (a, room(b)) not in MMAR_EXCEPTIONS]
    assert not upward, "imports that run up: " + ", ".join(f"{a} -> {b}" for a, b in upward)


def test_the_mmar_package_stands_alone():
    outside = [(a, b) for a, targets in graph().items() if room(a) == "mmar" for b in targets
               if room(b) != "mmar" and (a, room(b)) not in MMAR_EXCEPTIONS]
    assert not outside, f"cogito_lib.mmar imports other kit modules: {outside}"


def _code_strings(path: Path):
    """String constants of a module that are code (not docstrings), with their line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)
                  and isinstance(node.value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_stage_folder_names_are_written_only_in_the_layout_module():
    typed = [f"{path.relative_to(PACKAGE)}:{line}: {text!r}" for name, path in modules().items() if name != "layout"
             for line, text in _code_strings(path) if STAGE_FOLDER.search(text)]
    assert not typed, "stage folder names outside cogito_lib/layout.py:\n" + "\n".join(typed)


def test_the_variant_list_is_defined_once():
    from cogito_lib.layout import VARIANTS

    copies = []
    for name, path in modules().items():
        if name == "layout":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Tuple, ast.List)):
                values = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                if len(values & set(VARIANTS)) >= 3:
                    copies.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not copies, f"a list of variants outside cogito_lib/layout.py: {copies}"


if __name__ == "__main__":
    for module, targets in sorted(graph().items()):
        print(f"{module or '(package)':28s} -> {', '.join(sorted(targets))}")
