"""Watching an unmodified BaseManager app on the wire: safe decoding (``decode``), frames of
a relayed connection (``frames``), their translation into the history (``translate``) and
the recorder that taps one relay per process (``relay``). ``site/`` holds the master's hook.
"""
