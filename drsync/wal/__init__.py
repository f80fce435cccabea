"""WAL archiving: a durable local spool, shipping it to the store, fetching it back.

``push`` is PostgreSQL's archive_command (it must be fast and must never
acknowledge what is not on disk; ``headstart`` compresses while it starts
up), ``ship`` moves the spool to the store and holds wal-fetch's verified
read, ``prefetch`` keeps the next segments verified ahead of recovery in a
queue that ``queue`` serves with a rename, and ``coverage`` answers which
moments can be restored. Imports stay light: ``drsync wal-push`` loads only
this package's ``headstart``, ``spool`` and ``push`` modules and the
repository's codec and crypto; a queued ``wal-fetch`` loads only ``queue``.
"""
