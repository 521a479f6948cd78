"""The package's layers, enforced: what each folder of ``imgpipe/`` may import.

Read from the source (AST), so a lazy import inside a function counts as much as one
at the top; only ``if TYPE_CHECKING:`` blocks are left out (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "imgpipe"

# Which imgpipe layers each layer may import (itself included). A layer is a folder of
# imgpipe/, or a top-level module.
MAY_IMPORT = {
    "core": {"core"},
    "facts": {"core", "facts"},
    "prepare": {"core", "facts"},
    "backends": {"core", "facts", "backends"},
    "products": {"core", "facts", "products"},
    "orchestration": {"core", "facts", "prepare", "backends", "products", "orchestration"},
    "cli": {"core", "facts", "prepare", "backends", "products", "orchestration", "cli"},
    "demo": {"core", "facts", "products", "demo"},
    "__init__": {"_version"},
    "__main__": {"cli"},
    "_version": set(),
}

# The pure core must not need any of these: planning is tested in milliseconds and a
# dry run answers at once.
NOT_IN_CORE = {"prefect", "prefect_dask", "paramiko", "dask", "distributed", "casacore", "astropy",
               "matplotlib", "numpy", "httpx", "subprocess", "multiprocessing"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path, module: str) -> set[str]:
    """Every module ``module`` imports (absolute names), lazy imports included."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = {id(n) for top in ast.walk(tree) if _type_checking_only(top) for n in ast.walk(top) if n is not top}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from imgpipe.core import config` imports the module imgpipe.core.config;
            # `from imgpipe.core.plan import Job`, a name of the module imgpipe.core.plan
            for alias in node.names:
                full = f"{base}.{alias.name}"
                names.add(full if full in MODULES else base)
    return names


MODULES = _modules()


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_imports_only_the_layers_below_it(module):
    layer = layer_of(module)
    allowed = MAY_IMPORT[layer] | {"__init__", "_version"}  # imgpipe/__init__ holds only the version
    used = {layer_of(name) for name in imports_of(MODULES[module], module) if name in MODULES}
    assert used <= allowed, f"{module} ({layer}) imports {sorted(used - allowed)}; {layer} may import {sorted(allowed)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer_of(m) == "core"))
def test_the_core_imports_no_prefect_ssh_dask_casacore_astropy_or_subprocess(module):
    heavy = {name.split(".")[0] for name in imports_of(MODULES[module], module)} & NOT_IN_CORE
    assert not heavy, f"{module} imports {sorted(heavy)}: the core stays pure (hand facts in from imgpipe.facts)"


def test_no_import_cycles():
    graph = {m: {n for n in imports_of(p, m) if n in MODULES and n != m} for m, p in MODULES.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = path[path.index(n):] + [n]
                pytest.fail("import cycle: " + " → ".join(cycle))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_rule_sees_lazy_imports_and_skips_type_checking_blocks(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from imgpipe.backends import ssh\n"
        "def f():\n    import prefect\n    from imgpipe.core import plan\n"
    )
    found = imports_of(source, "imgpipe.core.mod")
    assert {"prefect", "imgpipe.core.plan"} <= found
    assert "imgpipe.backends.ssh" not in found


def _lazy_imports_without_a_reason(path: Path) -> list[str]:
    """Imports inside functions with no comment on their line or above their block of imports."""
    lines = path.read_text().splitlines()
    tree = ast.parse("\n".join(lines))
    bad = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            i = node.lineno - 1
            while i >= fn.lineno and "#" not in lines[i]:
                text = lines[i].strip()
                if text and not text.startswith(("import ", "from ")) and i != node.lineno - 1:
                    break  # reached other code: no reason given for this block of imports
                i -= 1
            if "#" not in lines[i]:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return bad


def test_every_lazy_import_says_why():
    """An import inside a function is kept only where it saves start-up time (Prefect,
    paramiko, casacore, astropy: --help, --version and a dry run never load them), and a
    short comment says so; every other import is at the top of its module."""
    bad = [line for path in MODULES.values() for line in _lazy_imports_without_a_reason(path)]
    assert not bad, "lazy imports without a comment saying why:\n" + "\n".join(bad)
