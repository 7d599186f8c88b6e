"""Specification of the consume watchdog's decision (taskdispatch/engine/watchdog.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from taskdispatch.engine.watchdog import ConsumeWatchdog


@dataclass
class World:
    now: float = 0.0
    broker_up: bool = True
    full: bool = False
    probe_every_s: float = 5
    stopping: bool = False
    withdrawn: int = 0
    deaf: list[str] = field(default_factory=list)
    probes: list[float] = field(default_factory=list)
    alive: list[float] = field(default_factory=list)

    def watchdog(self) -> ConsumeWatchdog:
        return ConsumeWatchdog(
            send_probe=lambda: self.probes.append(self.now),
            record_alive=lambda: self.alive.append(self.now),
            broker_answers=lambda: self.broker_up,
            saturated=lambda: self.full,
            on_deaf=self.deaf.append,
            shutting_down=lambda: self.stopping,
            withdraw=self.withdraw,
            probe_every_s=self.probe_every_s,
            deaf_after_s=15,
            clock=lambda: self.now,
        )

    def withdraw(self) -> None:
        self.withdrawn += 1


def _run(world: World, dog: ConsumeWatchdog, until: float, *, answer: bool = False) -> str | None:
    """Step once a second until `until`; with `answer`, each probe arrives a second later."""
    while world.now < until:
        world.now += 1
        if answer and world.probes and world.probes[-1] == world.now - 1:
            dog.received()
        reason = dog.step()
        if reason:
            return reason
    return None


def test_watchdog_worker_receiving_rounds_sends_no_probe_and_stays_alive() -> None:
    """Messages arriving more often than the probe period: no probe, a heartbeat each step."""
    world = World()
    dog = world.watchdog()
    for _ in range(30):
        world.now += 1
        dog.received()
        assert dog.step() is None
    assert world.probes == []
    assert len(world.alive) == 30


def test_watchdog_idle_worker_answering_its_probe_is_never_deaf() -> None:
    """An idle worker probes itself after the period and counts the probe's receipt."""
    world = World()
    dog = world.watchdog()
    assert _run(world, dog, 60, answer=True) is None
    assert world.probes[:2] == [5.0, 11.0]  # a probe once the period passed in silence
    assert world.alive[-1] >= 55


def test_watchdog_probe_period_as_short_as_a_step_answered_probes_are_never_deaf() -> None:
    """A 1 s probe period: each answer is already a period old at the next look, yet an
    answered probe still proves consumption."""
    world = World(probe_every_s=1)
    dog = world.watchdog()
    for _ in range(60):
        world.now += 1.002  # a look takes a little time on top of the step
        assert dog.step() is None
        if world.probes and world.probes[-1] == world.now:
            world.now += 0.001
            dog.received()  # the probe comes back at once
    assert len(world.probes) >= 20
    assert world.alive[-1] >= 55


def test_watchdog_unanswered_probe_with_broker_up_is_deaf_after_the_limit() -> None:
    """No message for the period plus the deaf limit while the broker answers: deaf."""
    world = World()
    dog = world.watchdog()
    reason = _run(world, dog, 100)
    assert reason is not None and "deaf" in reason
    assert world.now == 5 + 15 + 1
    assert max(world.alive) < 5, "no heartbeat once the consumer fell silent"


def test_watchdog_broker_down_is_not_deafness() -> None:
    """While the broker does not answer, nothing is judged and no probe is sent."""
    world = World(broker_up=False)
    dog = world.watchdog()
    assert _run(world, dog, 100) is None
    assert world.probes == []
    world.broker_up = True
    assert _run(world, dog, 120) is not None  # judged again once the broker is back


def test_watchdog_saturated_worker_is_alive_without_receiving() -> None:
    """Every prefetch slot taken: the consumer asks for nothing, so silence is expected."""
    world = World(full=True)
    dog = world.watchdog()
    assert _run(world, dog, 100) is None
    assert world.probes == [] and len(world.alive) == 100


def test_watchdog_shutting_down_worker_is_never_deaf_and_withdraws_its_heartbeat() -> None:
    """A warm shutdown stops fetching on purpose: however long the silence and whatever
    probe is pending, no verdict, no probe, no heartbeat; the heartbeat is withdrawn once."""
    world = World()
    dog = world.watchdog()
    assert _run(world, dog, 8) is None
    assert world.probes == [5.0], "a probe is pending when the shutdown starts"
    alive_before = len(world.alive)
    world.stopping = True
    assert _run(world, dog, 200) is None
    assert world.probes == [5.0]
    assert len(world.alive) == alive_before
    assert world.withdrawn == 1
