"""Generated scenarios: Hypothesis strategies, and running them as properties.

Layering, from the core outwards:
  strategies  Hypothesis strategies that generate scenarios
  properties  run generated scenarios as properties
Each imports only from the layers above it, and from the scenario folder and below.
"""
