"""Generated scenarios: Hypothesis strategies, and running them as properties.

Layering, from the core outwards:
  strategies  Hypothesis strategies that generate scenarios
  properties  run generated scenarios as properties
  explore     search fault plans against a base scenario, hand back the smallest failure
Each imports only from the layers above it, and from the scenario folder and below.
"""
