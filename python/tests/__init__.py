"""Tests of the Python side of collapse-probe (run from the repository root with
``python -m unittest discover -s python/tests -t python``)."""
