"""A worker's event loop wakes as soon as a pool thread hands it a task's acknowledgement
(infrastructure/celery_wakeup.py): Celery's hub otherwise ran it at its next wake-up, up to a
second later, and the worker took no next task until then."""

import threading

from kombu.asynchronous import Hub

from config.celery import app
from infrastructure.celery_wakeup import HubWokenByPoolThreads, hub_woken_by_other_threads


def handed_from_another_thread(hub: Hub, done: list[str]) -> None:
    thread = threading.Thread(target=lambda: hub.call_soon(lambda: done.append("acked")))
    thread.start()
    thread.join()


def test_a_callback_handed_over_by_another_thread_wakes_the_event_loop() -> None:
    hub = Hub()
    try:
        hub_woken_by_other_threads(hub)
        done: list[str] = []
        handed_from_another_thread(hub, done)
        # The loop, blocked in its poll, would return now: the wake-up is readable.
        assert hub.poller.poll(0)
        loop = hub.create_loop()
        next(loop)  # runs what is ready, then drains the wake-up
        next(loop)
        assert done == ["acked"]
        assert not hub.poller.poll(0)
    finally:
        hub.close()


def test_without_it_the_loop_has_nothing_to_wake_for() -> None:
    hub = Hub()
    try:
        hub.call_soon(lambda: None)
        handed_from_another_thread(hub, [])
        assert not hub.poller.poll(0)
    finally:
        hub.close()


def test_the_loop_is_woken_again_after_a_lost_broker_connection_reset_it() -> None:
    hub = Hub()
    try:
        hub_woken_by_other_threads(hub)
        hub.reset()  # what Celery does when the broker connection is lost
        hub_woken_by_other_threads(hub)  # the consumer's loop starts again
        handed_from_another_thread(hub, [])
        assert hub.poller.poll(0)
    finally:
        hub.close()


def test_every_worker_does_it_each_time_its_event_loop_starts() -> None:
    assert HubWokenByPoolThreads in app.steps["consumer"]
