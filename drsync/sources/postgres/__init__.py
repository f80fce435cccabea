"""PostgreSQL: logical dumps and physical base backups as streams, and back.

Everything goes through PostgreSQL's own tools (psql, pg_dump, pg_dumpall,
pg_basebackup, pg_restore, pg_ctl); no driver is needed. Like every source,
this package never imports the repository.
"""

from drsync.sources.postgres.dump import LOGICAL_DUMP_NAME, pg_dump_source, pg_restore_stream
from drsync.sources.postgres.physical import (
    PGDATA_PREFIX,
    base_backup_source,
    check_restore_command,
    configure_recovery,
    recovery_outcome,
    start_cluster,
)
from drsync.sources.postgres.tools import PgTools, RecoveryTarget, lsn_to_int, segment_name

__all__ = [
    "LOGICAL_DUMP_NAME",
    "PGDATA_PREFIX",
    "PgTools",
    "RecoveryTarget",
    "base_backup_source",
    "check_restore_command",
    "configure_recovery",
    "lsn_to_int",
    "pg_dump_source",
    "pg_restore_stream",
    "recovery_outcome",
    "segment_name",
    "start_cluster",
]
