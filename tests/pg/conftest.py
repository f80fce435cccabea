"""Fixtures of the PostgreSQL tests: a throwaway cluster, started and removed."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from drsync.testing_postgres import Cluster, make_cluster_dir


@pytest.fixture
def cluster(pg_bindir: str) -> Iterator[Cluster]:
    c = Cluster(make_cluster_dir(), pg_bindir)
    c.initdb()
    c.start()
    yield c
    c.stop("immediate")
    subprocess.run(["rm", "-rf", str(c.base)])
