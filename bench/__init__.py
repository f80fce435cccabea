"""Benchmark scripts; a package so that ``from bench import datagen`` works from the repo root.

Each module also runs as a script (``python bench/datagen.py ...``) and imports none of
its siblings, so either way of running it works.
"""
