"""tox plugin: let tox find the interpreters installed under ~/.pyenv/versions.

They are installed but not on PATH; prepending their bin directories here lets tox's
interpreter discovery find python3.12 and python3.13. An interpreter a machine truly
lacks is skipped (skip_missing_interpreters); py311, the default interpreter, never is.
"""

from __future__ import annotations

import os
from pathlib import Path

from tox.plugin import impl


def _pyenv_bins() -> list[str]:
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if not root.is_dir():
        return []
    return [str(path / "bin") for path in sorted(root.glob("3.1[1-9]*")) if (path / "bin").is_dir()]


@impl
def tox_register_tox_env(register: object) -> None:  # a hook that runs early
    extra = [entry for entry in _pyenv_bins() if entry not in os.environ.get("PATH", "")]
    if extra:
        # Before PATH: pyenv shims for versions not selected answer "command not found".
        os.environ["PATH"] = os.pathsep.join([*extra, os.environ.get("PATH", "")])
