"""Users' engine apps, as a team would write them, for the tests of the engine hooks:
each has one task, ``probe(kind, marker)``, that retries once, fails, or runs long."""
