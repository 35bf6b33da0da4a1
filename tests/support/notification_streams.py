"""What every user's stream of a notification log must look like after many
appends, whoever made them: for the concurrency tests of the SQL log."""

from __future__ import annotations

from service.service_layer.ports import NotificationLog


def check_streams(log: NotificationLog, users: list[str],
                  returned: dict[tuple[str, str], int]) -> None:
    """Each stream: strictly increasing, its own entries plus the broadcasts
    after it began, each at the offset its append returned."""
    broadcasts = [a.offset for a in log.read_span(0, log.head(), 100_000) if a.user_ids is None]
    for user in users:
        page, position = log.read(user, 0, 100_000)
        got = [n.offset for n in page]
        assert got == sorted(set(got))
        own = sorted(o for (u, _), o in returned.items() if u == user)
        assert got == sorted(own + [b for b in broadcasts if b > position.since])
        for publisher in {n.id.split("-")[0] for n in page}:
            mine = [int(n.id.split("-")[1]) for n in page if n.id.split("-")[0] == publisher]
            assert mine == sorted(mine)
