"""The fault-action table in the contract: its decisions, and that it is the only place
that lists actions (no module of the harness names two actions in a literal collection)."""

from __future__ import annotations

import ast
from pathlib import Path

import harness
from harness import contract
from harness.contract import FAULT_ACTIONS, fault_action

PACKAGE = Path(harness.__file__).parent


def literal_action_sets(path: Path) -> list[int]:
    """The lines of every set, tuple, list or frozenset display holding two or more
    action names, and every dict display whose values are action names (a mapping from
    action to action). ``Literal[...]`` subscripts (types, for the schema) are left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    in_subscript = {
        id(n) for s in ast.walk(tree) if isinstance(s, ast.Subscript) for n in ast.walk(s.slice)
    }

    def names(nodes: list[ast.expr | None]) -> int:
        return sum(isinstance(n, ast.Constant) and n.value in FAULT_ACTIONS for n in nodes)

    found = []
    for node in ast.walk(tree):
        if id(node) in in_subscript:
            continue
        if (isinstance(node, ast.Set | ast.Tuple | ast.List) and names(list(node.elts)) >= 2) or (
            isinstance(node, ast.Dict) and names(list(node.values)) >= 1
        ):
            found.append(node.lineno)
    return sorted(found)


def test_no_module_but_the_contract_lists_actions_in_a_literal_collection() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "contract.py"
        for line in literal_action_sets(path)
    ]
    assert found == []


def test_the_scan_finds_a_hand_kept_action_set(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "A = frozenset({'kill', 'kill_tree'})\n"
        "B = {'pause': 'resume'}\n"
        "C = ('kill',)\n"  # one name is a comparison, not a list
        "D = typing.Literal['kill', 'pause']\n"
        "E = {'kill': 'why not'}\n"
    )
    assert literal_action_sets(probe) == [1, 2]


def test_kill_tree_is_a_death_and_a_kill_kill_child_is_neither() -> None:
    assert {"kill", "kill_tree", "terminate", "restart"} == contract.PROCESS_DEATHS
    assert {"kill", "kill_tree", "kill_master"} == contract.KILLS
    child = fault_action("kill_child")
    assert not child.ends_target
    assert child.reach == "children"
    assert child.drawn == "kill"


def test_every_window_is_ended_by_an_action_of_the_same_aim() -> None:
    for name, ender in contract.WINDOW_ENDS.items():
        assert FAULT_ACTIONS[ender].aims == FAULT_ACTIONS[name].aims, name
        assert not FAULT_ACTIONS[ender].ended_by, f"{ender} ends {name}; it opens no window"
    assert contract.SUSPENDS == {
        "pause": "resume",
        "partition": "heal",
        "isolate": "heal_hosts",
        "partition_hosts": "heal_hosts",
        "one_way": "heal_hosts",
    }


def test_the_rows_agree_with_their_names_and_the_format() -> None:
    for name, row in FAULT_ACTIONS.items():
        assert row.name == name
        assert row.takes_target == contract.ACTIONS[name]
        assert not (row.comes_back and not row.ends_target), name
        assert not row.network or row.takes_target, name
        assert row.does, name


def test_an_unknown_action_claims_nothing() -> None:
    row = fault_action("set_fire")
    assert (row.ends_target, row.suspends, row.drawn, row.generated) == (False, False, "mark", "")
    assert fault_action(None).name == "None"
