"""The sample municipal database that ``make demo`` backs up, and how to change and check it.

A deterministic SQLite file for a small Kyushu municipality: the resident registry
(住民基本台帳), resident tax per fiscal year (住民税) and National Health Insurance
enrolment (国民健康保険). ``generate`` builds it for a seed and a target size;
``mutate`` applies one day's edits, concentrated in a few hot regions of the registry
as a real office's are; ``compare`` says row by row whether a restored copy matches.

Only the standard library is used, so the demo and the tests need nothing else.
"""

from __future__ import annotations

from drsync.sample.compare import compare
from drsync.sample.generate import SCHEMA, SampleStats, generate
from drsync.sample.mutate import mutate

__all__ = ["SCHEMA", "SampleStats", "compare", "generate", "mutate"]
