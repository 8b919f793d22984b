"""The harness's layering as stated at the top of ``harness/__init__.py``, and the seam:
no module of the harness but its distq adapter imports distq."""

from __future__ import annotations

import sys
from pathlib import Path

import harness
from tests.test_layering import imports, stated_layers

PACKAGE = Path(harness.__file__).parent
#: The harness's own dependencies (pyproject's test extra); distq only through its adapter.
THIRD_PARTY = frozenset({"msgspec", "psutil", "pytest", "_pytest", "hypothesis"})
DISTQ_ADAPTER = PACKAGE / "systems" / "distq.py"
#: Subpackages that are one layer each (their modules may import each other).
SUBPACKAGES = ("systems", "wire")


def layering_violations(package: Path) -> list[str]:
    layers = stated_layers(package)
    rank = {layer: n for n, layer in enumerate(layers)}
    found = []
    subpackages = [package / name for name in SUBPACKAGES]
    for path in sorted(
        [*package.glob("*.py"), *(p for sub in subpackages for p in sub.glob("*.py"))]
    ):
        module = path.stem if path.parent == package else path.parent.name
        if path == package / "__init__.py":
            continue  # it names its lazily loaded exports
        if module not in rank:
            found.append(f"{path.name}: not in the layering stated in __init__.py")
            continue
        for line, imported in imports(path, package.name):
            top, _, rest = imported.partition(".")
            where = f"{path.relative_to(package.parent)}:{line}"
            if top in ("harness", "") and rest:
                target = rest.split(".")[0]
                if target not in rank:
                    found.append(f"{where}: imports {imported!r}, not in the layering")
                elif rank[target] > rank[module] or (
                    target == module and module not in SUBPACKAGES
                ):
                    found.append(f"{where}: {module} imports {target}, a layer below it")
            elif top not in sys.stdlib_module_names | THIRD_PARTY | {"distq", "harness"}:
                found.append(f"{where}: imports {imported!r}, not a harness dependency")
    return found


def distq_importers(package: Path) -> list[str]:
    """Every harness module but the distq adapter that imports distq (anywhere in it)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        if path == package / "systems" / "distq.py":
            continue
        for line, imported in imports(path, package.name):
            if imported.split(".")[0] == "distq":
                found.append(f"{path.relative_to(package.parent)}:{line}: imports {imported}")
    return found


def test_every_harness_module_is_in_the_stated_layering() -> None:
    modules = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"} | set(SUBPACKAGES)
    assert sorted(stated_layers(PACKAGE)) == sorted(modules)


def test_each_harness_module_imports_only_from_layers_above_it() -> None:
    assert layering_violations(PACKAGE) == []


def test_only_the_distq_adapter_imports_distq() -> None:
    assert distq_importers(PACKAGE) == []
    assert DISTQ_ADAPTER.is_file()


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
