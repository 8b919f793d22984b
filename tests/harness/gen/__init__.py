"""Tests of the generated scenarios and the property runs."""
