"""Fixtures of the MariaDB tests: throwaway servers, started and removed."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from drsync.testing_mariadb import MariadbServer, missing_mariadb_programs
from tests.helpers import unavailable


def mariadb_required() -> None:
    missing = missing_mariadb_programs()
    if missing:
        unavailable(f"needs MariaDB's programs ({', '.join(missing)} missing)")


@pytest.fixture
def mariadb_factory() -> Iterator[Callable[[], MariadbServer]]:
    mariadb_required()
    made: list[MariadbServer] = []

    def make() -> MariadbServer:
        server = MariadbServer()
        made.append(server)
        server.install()
        server.start()
        return server

    yield make
    for server in made:
        server.remove()


@pytest.fixture
def mariadb(mariadb_factory: Callable[[], MariadbServer]) -> MariadbServer:
    return mariadb_factory()
