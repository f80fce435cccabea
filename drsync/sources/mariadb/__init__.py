"""MariaDB and MySQL: logical dumps, binary logs, and back.

Everything goes through the server's own programs (mariadb, mariadb-dump,
mariadb-binlog, or MySQL's mysql* names); no driver is needed. Like every
source, this package never imports the repository.
"""

from drsync.sources.mariadb.conninfo import MariadbConnection, MariadbDsn, parse_dsn
from drsync.sources.mariadb.dump import DUMP_NAME, MariadbDumpSource
from drsync.sources.mariadb.tools import MariadbTools

__all__ = ["DUMP_NAME", "MariadbConnection", "MariadbDsn", "MariadbDumpSource",
           "MariadbTools", "parse_dsn"]
