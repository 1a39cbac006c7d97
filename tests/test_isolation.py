"""One request never harms another, through the real stack: hostile bodies sent beside good drawings get
their own 400 while every good drawing is answered 200; a worker SIGKILLed under 16 clients, again and
again, loses none of their drawings (web/batching.py asks a failed batch's drawings again, alone, and they
wait at TorchServe for the worker's replacement within WEB_TIMEOUT: docs/limits.md, "A worker killed
under load"). /readyz floods: tests/test_health.py. The same faults measured: bench/faults.py."""

import os
import signal
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from tests.clients import Client, soak_images
from tests.stack import get_json

HOSTILE = b"[" * 5000  # JSON nested past the parser: the handler's 400 for that drawing alone


def retried(stack) -> float:
    """Drawings the web app has asked again alone (digit_retried_drawings_total in its /metrics)."""
    with urllib.request.urlopen(stack.web_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("digit_retried_"))


def test_hostile_bodies_beside_good_drawings_get_their_400_and_every_good_drawing_its_answer(stack):
    """8 clients send good drawings while 4 others (from 127.0.0.2) send `[` * 5000 to /predict and
    /read: they share batches at the model, and each drawing gets its own answer."""
    bodies = soak_images()
    alone = Client(stack.web_url)
    expected = [alone.predict(body)[1]["digit"] for body in bodies]
    workers = stack.worker_pids()
    stop = threading.Event()

    def good(seed: int) -> Counter:
        client, seen = Client(stack.web_url), Counter()
        for n in range(50):
            i = (seed * 7 + n) % len(bodies)
            status, answer = client.predict(bodies[i])
            seen[status if status != 200 or answer["digit"] == expected[i] else "wrong digit"] += 1
        return seen

    def hostile(n: int) -> Counter:
        client, seen = Client(stack.web_url, "127.0.0.2"), Counter()
        while not stop.is_set():
            status, answer = client.predict(HOSTILE, "/read" if n % 2 else "/predict")
            seen[status if "error" in answer else "no error"] += 1
        return seen

    with ThreadPoolExecutor(12) as pool:
        attacks = [pool.submit(hostile, n) for n in range(4)]
        goods = sum(pool.map(good, range(8)), Counter())
        stop.set()
        bad = sum((attack.result() for attack in attacks), Counter())
    print(f"\ngood drawings: {dict(goods)}; hostile bodies: {dict(bad)}")
    assert goods == {200: 400}
    assert set(bad) == {400} and bad[400] >= 20
    assert stack.worker_pids() == workers, "a hostile body restarted a worker"


def test_a_worker_killed_again_and_again_under_16_clients_loses_no_drawing(own_stack):
    """Three SIGKILLs of the one worker while 16 clients send drawings (each kill once its replacement
    has answered for a second): every drawing answered 200, the killed batches' asked again."""
    bodies = soak_images()
    stop, statuses, lock = threading.Event(), Counter(), threading.Lock()

    def send(n: int) -> None:
        client = Client(own_stack.web_url)
        while not stop.is_set():
            status, _ = client.predict(bodies[n % len(bodies)])
            with lock:
                statuses[status] += 1

    before = retried(own_stack)
    clients = [threading.Thread(target=send, args=(n,)) for n in range(16)]
    for thread in clients:
        thread.start()
    try:
        for _ in range(3):
            time.sleep(1)
            (victim,) = own_stack.worker_pids()
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()
            while not (pids := own_stack.ready_worker_pids()) or victim in pids:
                assert time.monotonic() - killed < 30, "no new worker within 30 s"
                time.sleep(0.1)
            print(f"\nworker {victim} killed: {pids} ready {time.monotonic() - killed:.1f} s later")
        time.sleep(1)
    finally:
        stop.set()
        for thread in clients:
            thread.join()
    print(f"answers: {dict(statuses)}; drawings asked again: {retried(own_stack) - before:.0f}")
    assert set(statuses) == {200} and statuses[200] > 100, statuses
    assert retried(own_stack) > before  # the kills did catch drawings in flight
    assert get_json(own_stack.web_url + "/readyz") == (200, {"status": "ready"})
