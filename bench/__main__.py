"""``python -m bench NAME [options]``: run one benchmark; its last line is JSON.
``python -m bench all``: run every benchmark, write bench/results.json, print a table."""

import gevent

gevent.config.track_greenlet_tree = False  # as the service runs (service/__main__.py)

from gevent import monkey  # noqa: E402

monkey.patch_all()

import sys  # noqa: E402

from bench.registry import main  # noqa: E402

raise SystemExit(main(sys.argv[1:]))
