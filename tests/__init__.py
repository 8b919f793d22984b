"""The tests, laid out as the code is: ``distq/`` and ``harness/<folder>/``. Shared builders
and waiters are in ``support``; the helper modules beside it (broken variants, toy
systems, a producer, task functions) are run by the tests as ``python -m tests.<name>``."""
