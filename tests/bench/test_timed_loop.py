"""bench.probes.timed_loop: a plain loop's steps timed by the stages' StepTimer (fake clock)."""

from __future__ import annotations

import pytest

from bench.probes.timed_loop import TimedLoop


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_steps_after_warmup_are_timed_and_epoch_gaps_left_out() -> None:
    clock = FakeClock()
    loop = TimedLoop(warmup_steps=2, clock=clock)
    for epoch in range(2):
        loop.new_epoch()
        clock.now += 100.0  # validation or start-up before the epoch: never a step's time
        for _ in range(4):
            clock.now += 0.5  # loading and training of one step of 8 images
            loop.step_done(8)
    # Epoch 1: steps 1-2 warm-up, 3-4 timed; epoch 2: its first step follows the gap (untimed), 3 timed.
    assert loop.images_per_second() == pytest.approx(16.0)  # read first: the timer adds up its steps then
    assert loop.timer.images == 5 * 8
    assert loop.timer.seconds == pytest.approx(5 * 0.5)


def test_no_timed_step_gives_zero() -> None:
    loop = TimedLoop(warmup_steps=5, clock=FakeClock())
    loop.step_done(4)
    assert loop.images_per_second() == 0.0
