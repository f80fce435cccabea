"""``python -m drsync``: the same CLI as the ``drsync`` script (the agent runs its
background jobs this way, as a child process of its own interpreter)."""

from drsync.entry import main

main()
