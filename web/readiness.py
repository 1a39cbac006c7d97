"""/readyz from what the web app already knows: however often it is asked, TorchServe gets at most one
probe every `interval` seconds from it, and none while drawings are being answered.

Two kinds of word count, the latest wins, both judged by the one readiness rule (web/torchserve.py
`readiness`):
- the handler's answer (200 or 422) to a drawing sent to the default version (web/answers.py): the proof
  the probe looks for, at no cost;
- the probe (TorchServeClient.ready: the blank canvas within PROBE_TIMEOUT), sent by a background task
  (started by the first /readyz: a kubelet asks from the pod's start on) every `interval` seconds unless
  such an answer came within the last `interval`: under traffic no probe is sent at all.
Word older than `stale` seconds (the task stuck or gone) is no word: not ready.

Bounds (`bound`, 5 s at the default 2 s interval): once TorchServe or its worker is gone, /readyz says not
ready within 2 intervals + PROBE_TIMEOUT (an answer just before, a tick that skips the probe because of
it, the next tick's probe); once it is back, ready within an interval + PROBE_TIMEOUT.
"""

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable

from web.torchserve import PROBE_TIMEOUT, Readiness

INTERVAL = 2.0  # WEB_READY_INTERVAL (web/config.py); a kubelet asks every 5 s (deploy/base/kubernetes.yaml)


class Watch:
    def __init__(
        self, probe: Callable[[], Awaitable[Readiness]], interval: float = INTERVAL, clock=time.monotonic
    ):
        self.probe = probe
        self.interval = interval
        self.clock = clock
        self.answered_at = -math.inf  # when a drawing's answer of the default version last said something
        self.answer_word = Readiness(True)
        self.probed_at = -math.inf  # when the last probe's word came
        self.probed = Readiness(False, "the model server has not been asked yet")
        self.probes = 0  # sent so far (tests)
        self._word = asyncio.Event()  # set by the first probe
        self._task: asyncio.Task | None = None

    @property
    def bound(self) -> float:
        """Seconds within which a change at TorchServe shows in now()."""
        return 2 * self.interval + PROBE_TIMEOUT

    @property
    def stale(self) -> float:
        """Word older than this is no word: the bound, and an interval for a busy event loop."""
        return self.bound + self.interval

    def answered(self, word: Readiness = Readiness(True)) -> None:  # noqa: B008 (a frozen tuple)
        """A drawing's answer of the default version said this of its worker (web/answers.py): ready (200
        or 422), or not (a 5xx, no answer)."""
        self.answered_at, self.answer_word = self.clock(), word

    def now(self) -> Readiness:
        latest = max(self.answered_at, self.probed_at)
        if self.clock() - latest > self.stale:
            if latest == -math.inf:
                return Readiness(False, "the model server has not answered yet")
            return Readiness(False, f"no word from the model server for {self.clock() - latest:.0f} s")
        return self.answer_word if self.answered_at > self.probed_at else self.probed

    async def ready(self) -> Readiness:
        """now(). The first call starts the background probe and waits for its word (PROBE_TIMEOUT and a
        little): a web app nobody asks (`make web` on a laptop, a test) sends no probes."""
        if self._task is None:
            self._task = asyncio.create_task(self.run())
        if max(self.answered_at, self.probed_at) == -math.inf:
            try:
                await asyncio.wait_for(self._word.wait(), PROBE_TIMEOUT + 0.5)
            except TimeoutError:
                pass
        return self.now()

    async def run(self) -> None:
        """The background task: a probe each interval that had no answer of the default version."""
        while True:
            if self.clock() - self.answered_at >= self.interval:
                self.probes += 1
                try:
                    result = await self.probe()
                except Exception as exc:  # the task must outlive any probe, or /readyz says stale for good
                    result = Readiness(False, f"the readiness probe failed ({type(exc).__name__})")
                self.probed, self.probed_at = result, self.clock()
                self._word.set()
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        """On shutdown, before the session the probe uses closes."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
