"""Format 2 moved the distq kind's own knobs from [cluster] to [system]: a format-1 file
still loads to the same scenario, a knob in the wrong table is one line, and
``python -m harness upgrade`` rewrites a file in place keeping its comments."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import cli
from harness.scenario import ScenarioError, load_scenario
from harness.scenario.upgrade import UpgradeError, upgrade_file, upgrade_text

HEAD = 'name = "n"\ndescription = "d"\n'
V1 = (
    "scenario = 1  # the format\n" + HEAD + "\n[cluster]\nworkers = 3\n"
    "journal = true  # resume on restart\nworker_reconnect_s = 30\nlease_timeout_s = 2.0\n"
    '\n[jobs]\ntask = "square"\ncount = 4\n'
)
V2 = (
    "scenario = 2\n" + HEAD + "\n[cluster]\nworkers = 3\nlease_timeout_s = 2.0\n"
    "\n[system]\njournal = true\nworker_reconnect_s = 30\n"
    '\n[jobs]\ntask = "square"\ncount = 4\n'
)


def _write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_format_1_file_loads_to_the_same_scenario_as_its_format_2_twin(tmp_path: Path) -> None:
    old = load_scenario(_write(tmp_path, V1, "old.toml"))
    new = load_scenario(_write(tmp_path, V2, "new.toml"))
    assert old == new
    assert new.system == {"journal": True, "worker_reconnect_s": 30}
    assert new.cluster.workers == 3
    assert new.cluster.lease_timeout_s == 2.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "scenario = 2\n" + HEAD + "[cluster]\njournal = true\n",
            "cluster.journal: a key of the distq system since format 2: write it in [system]",
        ),
        (
            "scenario = 1\n"
            + HEAD
            + '[cluster]\nprefetch = 2\n[system]\nkind = "tests.toy_system:KIND"\n',
            "cluster.prefetch: not supported by system kind 'tests.toy_system:KIND'",
        ),
        (
            "scenario = 1\n" + HEAD + "[cluster]\nprefetch = 2\n[system]\nprefetch = 3\n",
            "cluster.prefetch and system.prefetch both given",
        ),
    ],
)
def test_a_knob_in_the_wrong_table_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert str(raised.value).startswith(f"{path}: {message}")
    assert "\n" not in str(raised.value)


def test_upgrade_moves_the_knobs_with_their_comments_and_keeps_the_rest(tmp_path: Path) -> None:
    text = upgrade_text(V1)
    assert text.startswith("scenario = 2  # the format\n")
    assert "[system]\njournal = true  # resume on restart\nworker_reconnect_s = 30\n" in text
    assert "[cluster]\nworkers = 3\nlease_timeout_s = 2.0\n" in text
    assert upgrade_text(text) == text  # already current: unchanged


def test_upgrade_adds_to_an_existing_system_table(tmp_path: Path) -> None:
    text = "scenario = 1\n" + HEAD + '[cluster]\nprefetch = 2\n\n[system]\nenv = { A = "1" }\n'
    upgraded = upgrade_text(text)
    assert upgraded.endswith('[system]\nprefetch = 2\nenv = { A = "1" }\n')


def test_upgrade_file_rewrites_in_place_only_when_it_is_the_same_scenario(tmp_path: Path) -> None:
    path = _write(tmp_path, V1)
    before = load_scenario(path)
    assert upgrade_file(path) is True
    assert load_scenario(path) == before
    assert path.read_text().startswith("scenario = 2")
    assert upgrade_file(path) is False
    assert list(tmp_path.iterdir()) == [path]  # no trial file left behind


def test_a_cluster_written_inline_is_not_upgraded_and_the_file_is_untouched(tmp_path: Path) -> None:
    text = "scenario = 1\n" + HEAD + "cluster = { journal = true }\n"
    path = _write(tmp_path, text)
    with pytest.raises(UpgradeError, match="move its keys by hand"):
        upgrade_file(path)
    assert path.read_text() == text


def test_the_upgrade_command_says_what_it_did_per_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _write(tmp_path, V1, "old.toml")
    current = _write(tmp_path, V2, "new.toml")
    broken = _write(tmp_path, "scenario = 1\n" + HEAD + "cluster = { journal = true }\n", "x.toml")
    assert cli.main(["upgrade", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"current {current}", f"upgraded {old}"]
    assert err.splitlines() == [
        f"{broken}: not upgraded: [cluster] is not a table of its own: move its keys by hand"
    ]
