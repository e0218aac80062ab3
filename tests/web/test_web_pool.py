"""Browser-free: the idle gate and the context pool that schedule background browser work, and page inlining.

The pool is driven with fake sessions whose "build" takes a few event-loop turns per phase, so the tests can see
what runs when: nothing behind back-to-back calls, spares in idle time, a reset joining the spare being made.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from reflectgym.envs.web.idle import IdleGate
from reflectgym.envs.web.inline import inline_assets
from reflectgym.envs.web.pool import ContextPool, Pace


@dataclass(eq=False)
class FakeSession:
    url: str | None
    number: int
    alive: bool = True
    closed: bool = False


class FakeBrowser:
    """Builds fake sessions in three phases of `phase_s` each, recording whether a call was in flight meanwhile."""

    def __init__(self, gate: IdleGate, phase_s: float = 0.01) -> None:
        self.gate = gate
        self.phase_s = phase_s
        self.built: list[FakeSession] = []
        self.closed: list[FakeSession] = []
        self.phases_during_calls = 0

    async def build(self, url: str | None, pace: Pace | None) -> FakeSession:
        for _ in range(3):
            if pace is not None:
                await pace()
            self.phases_during_calls += pace is not None and self.gate.busy
            await asyncio.sleep(self.phase_s)
        session = FakeSession(url=url, number=len(self.built))
        self.built.append(session)
        return session

    async def close(self, session: FakeSession) -> None:
        session.closed = True
        self.closed.append(session)

    def pool(self, spares: int = 1) -> ContextPool[FakeSession]:
        return ContextPool(self.gate, self.build, self.close, lambda session: session.alive, spares=spares)


async def call(gate: IdleGate, seconds: float) -> None:
    """An episode call (a step) that keeps the browser busy for `seconds`."""
    async with gate.call():
        await asyncio.sleep(seconds)


def test_the_gate_opens_only_after_the_grace_period() -> None:
    async def main() -> None:
        gate = IdleGate(grace_s=0.05)
        assert gate.open()
        async with gate.call():
            assert gate.busy and not gate.open()
        assert not gate.open()  # a call just ended: a back-to-back caller may be about to come back
        started = asyncio.get_running_loop().time()
        await gate.idle()
        assert asyncio.get_running_loop().time() - started >= 0.04
        async with gate.call(), gate.waiting():
            assert gate.open()  # a call waiting for background work lifts the gate

    asyncio.run(main())


def test_the_gate_refuses_a_negative_grace() -> None:
    with pytest.raises(ValueError, match="grace_s"):
        IdleGate(grace_s=-1)


def test_a_spare_is_made_in_idle_time_and_taken_by_the_next_reset() -> None:
    async def main() -> None:
        gate = IdleGate(grace_s=0.01)
        browser = FakeBrowser(gate)
        pool = browser.pool()
        first = await pool.take("a")
        pool.want("a")
        await asyncio.sleep(0.2)  # the agent thinks
        assert pool.ready == 1
        second = await pool.take("a")
        assert second is not first and second.url == "a" and len(browser.built) == 2
        pool.stop()

    asyncio.run(main())


def test_back_to_back_calls_never_share_the_loop_with_background_work() -> None:
    async def main() -> None:
        gate = IdleGate(grace_s=0.02)
        browser = FakeBrowser(gate)
        pool = browser.pool()
        for _ in range(5):
            async with gate.call():
                session = await pool.take("a")
            pool.want("a")
            pool.discard(session)
            await call(gate, 0.03)  # the step, straight after the reset
        assert browser.phases_during_calls == 0
        assert len(browser.built) == 5  # every reset made its own; no spare was started behind a step
        assert pool.pending_closes <= 1  # the resets closed the old sessions beside their builds
        pool.stop()

    asyncio.run(main())


def test_a_step_arriving_mid_build_waits_at_most_for_the_phase_under_way() -> None:
    async def main() -> None:
        gate = IdleGate(grace_s=0.0)
        browser = FakeBrowser(gate, phase_s=0.02)
        pool = browser.pool()
        pool.want("a")
        await asyncio.sleep(0.005)  # the build is in its first phase
        async with gate.call():
            await asyncio.sleep(0.1)  # a long step: the build must not go on meanwhile
            assert browser.phases_during_calls <= 1 and not browser.built
        await asyncio.sleep(0.1)
        assert pool.ready == 1
        pool.stop()

    asyncio.run(main())


def test_a_reset_joins_the_spare_being_made_without_losing_it() -> None:
    async def main() -> None:
        gate = IdleGate(grace_s=0.0)
        browser = FakeBrowser(gate, phase_s=0.02)
        pool = browser.pool()
        pool.want("a")
        await asyncio.sleep(0.005)
        async with gate.call():  # the reset lifts the gate while it waits for the spare
            session = await pool.take("a")
        assert browser.built == [session]  # joined, not made twice (nor made and dropped)
        pool.stop()

    asyncio.run(main())


def test_a_spare_for_another_task_is_replaced_and_closed() -> None:
    async def main() -> None:
        gate = IdleGate(grace_s=0.0)
        browser = FakeBrowser(gate)
        pool = browser.pool()
        pool.want("a")
        await asyncio.sleep(0.1)
        stale = browser.built[0]
        pool.want("b")
        await asyncio.sleep(0.15)
        assert stale.closed and pool.ready == 1
        assert (await pool.take("b")).url == "b"
        pool.stop()

    asyncio.run(main())


def test_dead_spares_are_not_handed_out_and_old_sessions_are_closed_when_idle() -> None:
    async def main() -> None:
        gate = IdleGate(grace_s=0.0)
        browser = FakeBrowser(gate)
        pool = browser.pool()
        pool.want("a")
        await asyncio.sleep(0.1)
        spare = browser.built[0]
        spare.alive = False
        old = FakeSession(url="a", number=-1)
        pool.discard(old)
        fresh = await pool.take("a")
        assert fresh is not spare and fresh.alive
        await asyncio.sleep(0.1)
        assert old.closed and spare.closed
        pool.stop()

    asyncio.run(main())


def test_without_spares_every_reset_builds_and_nothing_runs_behind() -> None:
    async def main() -> None:
        gate = IdleGate(grace_s=0.0)
        browser = FakeBrowser(gate)
        pool = browser.pool(spares=0)
        await pool.take("a")
        pool.want("a")
        await asyncio.sleep(0.1)
        assert pool.ready == 0 and len(browser.built) == 1
        pool.stop()

    asyncio.run(main())


def test_local_scripts_and_plain_stylesheets_are_inlined(tmp_path: Path) -> None:
    (tmp_path / "core").mkdir()
    (tmp_path / "pages").mkdir()
    (tmp_path / "core" / "a.js").write_text("var A = 1;")
    (tmp_path / "core" / "plain.css").write_text("body { color: red; }")
    (tmp_path / "core" / "images.css").write_text("body { background: url(x.png); }")
    (tmp_path / "core" / "breaks.js").write_text("document.write('</script>');")
    page = tmp_path / "pages" / "task.html"
    html = (
        b'<link rel="stylesheet" type="text/css" href="../core/plain.css">'
        b'<link rel="stylesheet" href="../core/images.css">'
        b'<script src="../core/a.js"></script>'
        b'<script src="../core/breaks.js"></script>'
        b'<script defer src="../core/a.js"></script>'
        b'<script src="https://example.com/x.js"></script>'
        b'<script src="../../outside.js"></script>'
    )
    out = inline_assets(html, page, tmp_path).decode()
    assert "<style>body { color: red; }" in out and "plain.css" not in out
    assert 'href="../core/images.css"' in out  # url() is relative to the stylesheet: kept as a request
    assert "<script>var A = 1;" in out
    assert 'src="../core/breaks.js"' in out  # would end the inline element early
    assert '<script defer src="../core/a.js">' in out
    assert 'src="https://example.com/x.js"' in out and 'src="../../outside.js"' in out
