"""Real engines (Celery, RQ, Dramatiq, Huey) on a real Valkey server, under the harness.

The harness starts the broker, the engine's own worker command and a producer; the task
module the workers load and the producer write the run's events. No engine is patched.
"""
