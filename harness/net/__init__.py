"""The network between a worker and its master: what a fault proxy does to the bytes, and
hosts of their own whose kernel drops the packets.

Layering, from the core outwards:
  toxics  network toxics: what a fault proxy does to the bytes (standard library only)
  link    one proxied connection: its readers, writers, frame counts and applied toxics
  proxy   the fault proxy between a worker and its master (asyncio, loopback only)
  netns   namespaces held by descriptors only; start a process inside one (standard library)
  hosts   a lab of hosts on a bridge, and packet faults in its kernel (pyroute2)
Each imports only from the layers above it and from the harness's core (contract).
"""
