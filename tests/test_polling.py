"""reconciler.ops.polling.ticks: the waiting loop of every verb that waits (apply --wait, run, wait,
drain, rollout status), on a clock that only moves when it sleeps."""

from __future__ import annotations

from helpers import FakeClock

from reconciler.ops.polling import ticks


def test_the_first_look_is_at_once_and_each_next_one_an_interval_later():
    """The loop body runs before any sleep, then after each sleep of the interval; nothing sleeps
    after the look that ends the loop."""
    fake = FakeClock()
    seen = []
    for looks in ticks(0.2, clock=fake.clock):
        seen.append((looks, fake.now - 1_000_000.0))
        if looks == 3:
            break
    assert [n for n, _ in seen] == [0, 1, 2, 3]
    assert [round(t, 6) for _, t in seen] == [0.0, 0.2, 0.4, 0.6]
    assert fake.sleeps == [0.2, 0.2, 0.2]


def test_the_loop_ends_after_a_look_at_or_past_the_deadline():
    """With a deadline the iteration ends after the first look made at or after it, so what is true
    at the deadline is still seen, and the caller's code after the loop reports the timeout."""
    fake = FakeClock()
    times = [round(fake.now - 1_000_000.0, 6) for _ in ticks(0.5, fake.clock.deadline(2.0), fake.clock)]
    assert times == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert fake.sleeps == [0.5] * 4


def test_a_deadline_already_passed_gives_one_look_and_no_sleep():
    """`wait --timeout 0` looks once: it succeeds if the condition holds, else times out at once."""
    fake = FakeClock()
    assert list(ticks(0.2, fake.clock.deadline(0), fake.clock)) == [0]
    assert fake.sleeps == []


def test_without_a_deadline_only_the_caller_ends_the_loop():
    """No deadline (`apply --wait` without --timeout, `run`): the loop goes on until the body leaves it."""
    fake = FakeClock()
    for looks in ticks(0.1, None, fake.clock):
        if looks == 5000:
            break
    assert len(fake.sleeps) == 5000 and fake.clock.deadline(None) is None
