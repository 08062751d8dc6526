"""The processing server (DESIGN.md §1): one Twisted service tree that takes probes' frames and collectors'
uploads, writes them through each module's key schema into Redis, follows Redis's keyspace notifications and
pushes graphs and diffs to viewers.

It imports the kernel (``wiredraw.core.*`` outside this package) and finds modules only through the plugin
registry; nothing below it imports it (the import contracts in pyproject.toml). The rooms:

- :mod:`.service`: the configuration, checked before anything starts, and the service tree (:class:`WiredrawServer`)
- :mod:`.probe_listener`, :mod:`.collector`: frames over UDP/TCP, uploads over HTTP
- :mod:`.ingest`: a frame's body through its module's write path into one Redis round trip
- :mod:`.redis_client`, :mod:`.embedded_redis`, :mod:`.notify`: Redis, the private redis-server, notifications
- :mod:`.live`, :mod:`.viewers`: each module's live graph and the viewer sessions (spec/viewer.md)
- :mod:`.credentials`: probe secrets and viewer/collector tokens in the data directory
"""
