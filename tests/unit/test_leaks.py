import gc

from service.service_layer.leaks import LeakTracker


class Session:
    pass


def test_a_released_object_still_referenced_after_its_grace_is_a_leak():
    now = [0.0]
    tracker = LeakTracker(grace_s=30, clock=lambda: now[0])
    kept, freed = Session(), Session()
    holder = [kept]  # something forgot to let go
    for obj in (kept, freed):
        tracker.track("connection", obj)
        tracker.released("connection", obj)
    del freed, obj
    gc.collect()
    assert tracker.check() == {"connection": {"alive": 1, "leaked": 0}}  # within grace
    now[0] = 31.0
    assert tracker.check() == {"connection": {"alive": 1, "leaked": 1}}
    assert tracker.check()["connection"]["leaked"] == 1 and tracker.leaked == {"connection": 1}
    holder.clear()
    del kept
    gc.collect()
    assert tracker.check() == {"connection": {"alive": 0, "leaked": 0}}
    assert tracker.leaked == {"connection": 1}  # counted once, ever


def test_released_references_are_bounded():
    tracker = LeakTracker(max_released=10)
    objs = [Session() for _ in range(50)]
    for obj in objs:
        tracker.released("connection", obj)
    assert len(tracker._released) == 10
