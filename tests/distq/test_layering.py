"""distq's layering as stated at the top of ``distq/__init__.py``: every module is in the
list, and each imports only from the layers above it, and only the standard library
besides (imports inside functions and ``TYPE_CHECKING`` blocks included)."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import distq

PACKAGE = Path(distq.__file__).parent
HEADING = "Layering, from the core outwards:\n"


def stated_layers(package: Path) -> list[str]:
    """The module names listed in the package docstring, core first."""
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8")))
    assert doc is not None, f"{package}/__init__.py does not state its layering"
    assert HEADING in doc, f"{package}/__init__.py does not state its layering"
    listing = doc.split(HEADING, 1)[1]
    names = []
    for line in listing.splitlines():
        if not line.startswith("  "):
            break
        if line.startswith("   "):
            continue  # a description's second line
        names.append(line.split()[0].rstrip("/"))
    return names


def imports(path: Path, package_name: str) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in ``path``; ``from pkg import mod`` names the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                yield node.lineno, "." * node.level + (node.module or "")
            elif node.module == package_name:
                for alias in node.names:
                    is_module = (path.parent / f"{alias.name}.py").is_file()
                    yield node.lineno, f"{package_name}.{alias.name}" if is_module else package_name
            elif node.module is not None:
                yield node.lineno, node.module


def violations(package: Path) -> list[str]:
    """One line per import that breaks the stated layering."""
    name = package.name
    layers = stated_layers(package)
    rank = {layer: n for n, layer in enumerate(layers)}
    found = []
    for path in sorted(package.glob("*.py")):
        module = path.stem
        if module == "__init__":
            continue  # the package re-exports the core's names
        if module not in rank:
            found.append(f"{name}/{path.name}: not in the layering stated in __init__.py")
            continue
        for line, imported in imports(path, name):
            where = f"{name}/{path.name}:{line}"
            top = imported.split(".")[0]
            if imported.startswith("."):
                found.append(f"{where}: relative import {imported!r}")
            elif top != name:
                if top not in sys.stdlib_module_names:
                    found.append(f"{where}: imports {imported!r}, not the standard library")
            elif imported == name:
                found.append(f"{where}: imports the package itself; import from the module")
            else:
                target = imported.split(".")[1]
                if target not in rank:
                    found.append(f"{where}: imports {imported!r}, which is not in the layering")
                elif rank[target] >= rank[module]:
                    found.append(f"{where}: {module} imports {target}, a layer below it")
    return found


def test_every_distq_module_is_in_the_stated_layering() -> None:
    modules = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    assert sorted(stated_layers(PACKAGE)) == sorted(modules)


def test_each_distq_module_imports_only_from_layers_above_it_and_the_stdlib() -> None:
    assert violations(PACKAGE) == []


def test_the_check_finds_upward_third_party_and_unlisted_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        f'"""A package.\n\n{HEADING}  core  the core\n  shell  the shell\nEach layer ..."""\n'
    )
    (package / "core.py").write_text(
        "import json\n\ndef f():\n    from pkg import shell\n    import msgspec\n"
    )
    (package / "shell.py").write_text("from pkg.core import f\nfrom pkg import f as g\n")
    (package / "extra.py").write_text("")
    assert violations(package) == [
        "pkg/core.py:4: core imports shell, a layer below it",
        "pkg/core.py:5: imports 'msgspec', not the standard library",
        "pkg/extra.py: not in the layering stated in __init__.py",
        "pkg/shell.py:2: imports the package itself; import from the module",
    ]
