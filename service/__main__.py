"""``python -m service <command>``. Monkey-patching comes first, before
anything imports socket, ssl, threading, psycopg2 or redis."""

from gevent import monkey

monkey.patch_all()

from psycogreen.gevent import patch_psycopg  # noqa: E402

patch_psycopg()

from service.entrypoints.cli import main  # noqa: E402

raise SystemExit(main())
