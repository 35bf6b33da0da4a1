"""``python -m service <command>``. Monkey-patching comes first, before
anything imports socket, ssl, threading, psycopg2 or redis."""

import gevent

# Engine.IO spawns a greenlet per incoming event; recording each one's
# spawning tree and stack cost much of the server's CPU under load
# (docs/benchmarks.md#changelog).
gevent.config.track_greenlet_tree = False

from gevent import monkey  # noqa: E402

monkey.patch_all()

from psycogreen.gevent import patch_psycopg  # noqa: E402

patch_psycopg()

from service.entrypoints.cli import main  # noqa: E402

raise SystemExit(main())
