"""Watching an unmodified BaseManager app on the wire. ``site/`` holds the master's hook.

Layering, from the core outwards:
  decode     safe decoding of a frame's pickle: stand-in records, never an import or a call
  identity   how an item names its job: keys by path or function, control items skipped
  frames     the frames of a relayed connection, paired request to reply
  translate  frames into the history's vocabulary
  relay      the recorder that taps one relay per process
Each imports only from the layers above it, and from the core and net.
"""
