"""Real engines (Celery, RQ, Dramatiq, Huey) on a real Valkey server, under the harness.

The harness starts the broker, the engine's own worker command and a producer; the task
module the workers load and the producer write the run's events. A user's own app is
loaded by a wrapper (``wrap_<engine>``) whose engine hooks write them instead (``hooks``,
``userapp``). No engine is patched.
"""
