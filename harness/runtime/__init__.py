"""A run as real processes: spawn the system's cluster, strike it with faults, collect.

Layering, from the core outwards:
  reaper   a lifeline process: kills a run's processes when the harness dies, SIGKILL too
  effects  signals on process trees, and the proof that each took effect
  disks    outputs on filesystems of their own, which a fault can fill
  cluster  spawn a system's processes as real processes; tear them down
  faults   fault actions, their triggers, the injector
  run      one run: cluster + faults + history + checks
Each imports only from the layers above it, and from the core, net, checks, report, wire
and systems. This is the only folder that spawns processes or sends signals.
"""
