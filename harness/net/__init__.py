"""The network between a worker and its master: what a fault proxy does to the bytes.

Layering, from the core outwards:
  toxics  network toxics: what a fault proxy does to the bytes (standard library only)
  link    one proxied connection: its readers, writers, frame counts and applied toxics
  proxy   the fault proxy between a worker and its master (asyncio, loopback only)
Each imports only from the layers above it and from the harness's core (contract).
"""
