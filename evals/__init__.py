"""Labelled evaluation sets (the YAML files here) and their loader, evals/cases.py."""
