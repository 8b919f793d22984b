from distq.jobs import resolve_task


def test_builtin_square() -> None:
    assert resolve_task("square")(7) == 49
