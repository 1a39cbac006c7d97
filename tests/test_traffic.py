"""Canary and shadow traffic and /metrics, through the real web app in front of a real TorchServe
serving two versions: 1.0 (the session's model, the default) and 2.0 (a deliberately weak one); /read
takes them as /predict does, on counters of its own."""

import math
import os
import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import Counter
from prometheus_client.parser import text_string_to_metric_families

from tests.clients import Client
from tests.stack import Stack, archive, make, post, version_workers
from train.canvases import drawings
from web.app import Config, init_app

pytestmark = pytest.mark.stack

# Rendered by the default registry's /metrics like any module-level metric defined outside web/metrics.py.
PROBE = Counter("digit_test_probe", "A counter only tests/test_traffic.py defines")


@pytest.fixture(scope="module")
def two_versions(model_dir, weak_model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("traffic")
    archive(model_dir, work / "model_store", "1.0")
    archive(weak_model_dir, work / "model_store", "2.0")
    stack = Stack(work / "run", work / "model_store").start()
    stack.tsctl("register", "2.0")
    yield stack
    stack.stop()


@pytest.fixture
def web_with(two_versions):
    """Restart the stack's web app with these environment variables (canary, shadow...)."""

    def start(**env: str) -> Stack:
        two_versions.stop_web()
        two_versions.start_web(**env)
        return two_versions

    yield start
    two_versions.stop_web()


def metrics(stack: Stack) -> dict:
    """{(sample name, frozenset of labels): value} from the web app's /metrics."""
    with urllib.request.urlopen(stack.web_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_canary_gets_its_share_and_pinned_requests_never_do(web_with):
    stack, n, percent = web_with(CANARY_VERSION="2.0", CANARY_PERCENT="20"), 2000, 20
    body = drawings(1, seed=3)[0][1]

    def send(count: int) -> list[str]:
        client = Client(stack.web_url)
        return [client.predict(body)[1].get("version") for _ in range(count)]

    with ThreadPoolExecutor(4) as pool:
        versions = [v for part in pool.map(send, [n // 4] * 4) for v in part]
    canary = versions.count("2.0")
    assert versions.count("1.0") + canary == n, set(versions)
    # Binomial(2000, 0.2): mean 400, sd 17.9; 4.5 sd either way fails by chance once in ~150,000 runs.
    sd = math.sqrt(n * percent / 100 * (1 - percent / 100))
    assert abs(canary - n * percent / 100) <= 4.5 * sd, f"{canary} of {n} went to the canary"
    pinned = [post(stack.web_url + "/predict?version=1.0", body) for _ in range(50)]
    assert all(status == 200 and answer["version"] == "1.0" for status, answer in pinned)

    samples = metrics(stack)
    assert value(samples, "digit_canary_requests_total", version="2.0") == canary
    predictions = "digit_predictions_total"
    assert value(samples, predictions, version="2.0", route="canary", status="200") == canary
    assert value(samples, predictions, version="1.0", route="default", status="200") == n - canary
    assert value(samples, predictions, version="1.0", route="pinned", status="200") == 50
    latency = "digit_predict_seconds_count"
    assert value(samples, latency, route="canary") + value(samples, latency, route="default") == n
    assert value(samples, "digit_predict_seconds_bucket", route="pinned", le="+Inf") == 50


def wait_for_shadows(
    stack: Stack, expected: int, seconds: float = 60, counter: str = "digit_shadow_requests_total"
) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        samples = metrics(stack)
        done = sum(v for (name, _), v in samples.items() if name == counter)
        if done >= expected or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def test_shadow_agreement_is_counted_and_the_default_answers(web_with):
    # Room for every copy (64 in flight, 30 s each) even on a busy machine: none may be dropped here.
    stack = web_with(SHADOW_VERSION="2.0", SHADOW_PERCENT="100", SHADOW_LIMIT="64", WEB_TIMEOUT="30")
    items = drawings(200, seed=5)
    client = Client(stack.web_url)
    answers = [client.predict(body) for _, body in items]
    assert all(status == 200 and answer["version"] == "1.0" for status, answer in answers)
    shadow_reads = [post(stack.web_url + "/predict?version=2.0", body)[1]["digit"] for _, body in items]
    agree = sum(a["digit"] == s for (_, a), s in zip(answers, shadow_reads, strict=True))
    assert 0 < agree < len(items), "the weak version should agree on some drawings, not all"

    samples = wait_for_shadows(stack, len(items))
    counted = {
        outcome: value(samples, "digit_shadow_requests_total", version="2.0", outcome=outcome)
        for outcome in ("agree", "disagree", "failed", "dropped")
    }
    assert counted["failed"] == counted["dropped"] == 0, counted
    assert counted["agree"] + counted["disagree"] == len(items), counted
    # Batched float arithmetic may, in principle, tip a near-tie the other way between the shadow copy
    # and the pinned request: allow two such drawings out of 200.
    assert abs(counted["agree"] - agree) <= 2, (counted, agree)
    assert value(samples, "digit_shadow_in_flight") == 0


def test_a_shadow_percent_copies_that_share_of_answers(web_with):
    stack, n, percent = web_with(SHADOW_VERSION="2.0", SHADOW_PERCENT="30", SHADOW_LIMIT="64"), 400, 30
    body, client = drawings(1, seed=9)[0][1], Client(stack.web_url)
    assert all(client.predict(body)[0] == 200 for _ in range(n))
    samples = wait_for_shadows(stack, n)
    counted = {
        outcome: value(samples, "digit_shadow_requests_total", version="2.0", outcome=outcome)
        for outcome in ("agree", "disagree", "failed", "dropped", "skipped")
    }
    copies = counted["agree"] + counted["disagree"]
    assert counted["failed"] == counted["dropped"] == 0 and copies + counted["skipped"] == n, counted
    # Binomial(400, 0.3): mean 120, sd 9.2; 4.5 sd either way fails by chance once in ~150,000 runs.
    sd = math.sqrt(n * percent / 100 * (1 - percent / 100))
    assert abs(copies - n * percent / 100) <= 4.5 * sd, counted


def test_a_hung_shadow_neither_slows_answers_nor_piles_up(web_with):
    stack = web_with(SHADOW_VERSION="2.0", SHADOW_PERCENT="100", SHADOW_LIMIT="4", WEB_TIMEOUT="4")
    body, client = drawings(1, seed=7)[0][1], Client(stack.web_url)
    assert client.predict(body)[0] == 200  # connections and the shadow path warm
    before = wait_for_shadows(stack, 1)
    shadow = make(stack, "shadow", "2.0")  # as in production: its workers yield the CPU to the default's
    assert shadow.returncode == 0, shadow.stderr
    frozen = version_workers(stack, "2.0")
    assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in frozen} == {19}
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)  # the shadow version stops answering: its copies hang
    try:
        for _ in range(12):
            started = time.monotonic()
            status, answer = client.predict(body)
            # Not a speed target: an answer that waited for its copy would take the 4 s timeout.
            assert status == 200 and answer["version"] == "1.0" and time.monotonic() - started < 2
        samples = metrics(stack)
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    assert value(samples, "digit_shadow_in_flight") == 4
    dropped = value(samples, "digit_shadow_requests_total", version="2.0", outcome="dropped")
    assert dropped - value(before, "digit_shadow_requests_total", version="2.0", outcome="dropped") == 8
    after = wait_for_shadows(stack, 1 + 12)
    assert value(after, "digit_shadow_in_flight") == 0
    assert client.predict(body)[0] == 200


def test_read_gets_the_canary_and_the_shadow_as_predict_does(web_with):
    """/read through the same Traffic as /predict: the canary takes its share of the reads without
    ?version=, the default's 200s are copied to the shadow and compared by number; on /read's counters."""
    stack, percent = (
        web_with(
            CANARY_VERSION="2.0",
            CANARY_PERCENT="50",
            SHADOW_VERSION="2.0",
            SHADOW_PERCENT="100",
            SHADOW_LIMIT="64",
            WEB_TIMEOUT="30",
        ),
        50,
    )
    bodies = [body for _, body in drawings(200, seed=11)]
    answers = [post(stack.web_url + "/read", body) for body in bodies]
    versions = [answer.get("version") for _, answer in answers]
    canary = versions.count("2.0")
    assert versions.count("1.0") + canary == len(bodies), set(versions)
    # Binomial(200, 0.5): mean 100, sd 7.1; 4.5 sd either way fails by chance once in ~150,000 runs.
    sd = math.sqrt(len(bodies) * percent / 100 * (1 - percent / 100))
    assert abs(canary - len(bodies) * percent / 100) <= 4.5 * sd, (
        f"{canary} of {len(bodies)} went to the canary"
    )
    copied = [
        (body, answer["number"])
        for body, (status, answer) in zip(bodies, answers, strict=True)
        if status == 200 and answer["version"] == "1.0"
    ]
    shadow_reads = [post(stack.web_url + "/read?version=2.0", body) for body, _ in copied]
    agree = sum(
        status == 200 and a["number"] == n for (_, n), (status, a) in zip(copied, shadow_reads, strict=True)
    )
    assert 0 < agree < len(copied), "the weak version should agree on some drawings, not all"

    samples = wait_for_shadows(stack, len(copied), counter="digit_read_shadow_requests_total")
    counted = {
        outcome: value(samples, "digit_read_shadow_requests_total", version="2.0", outcome=outcome)
        for outcome in ("agree", "disagree", "failed", "dropped")
    }
    assert counted["failed"] == counted["dropped"] == 0, counted
    assert counted["agree"] + counted["disagree"] == len(copied), counted
    assert abs(counted["agree"] - agree) <= 2, (counted, agree)  # near-ties, as for /predict's copies
    assert value(samples, "digit_canary_requests_total", version="2.0") == canary
    reads = "digit_reads_total"
    canary_by_status = sum(
        v for (name, labels), v in samples.items() if name == reads and ("route", "canary") in labels
    )
    assert canary_by_status == canary
    default_ok = value(samples, reads, version="1.0", route="default", status="200")
    assert default_ok == len(copied)
    assert value(samples, reads, version="2.0", route="pinned", status="200") == sum(
        status == 200 for status, _ in shadow_reads
    )
    latency = "digit_read_seconds_count"
    assert value(samples, latency, route="canary") + value(samples, latency, route="default") == len(bodies)
    # /predict's counters stay /predict's.
    assert not any(name in ("digit_predictions_total", "digit_shadow_requests_total") for name, _ in samples)


async def test_metrics_renders_the_default_registry(aiohttp_client, tmp_path):
    client = await aiohttp_client(init_app(Config(run_dir=tmp_path)))
    PROBE.inc()
    response = await client.get("/metrics")
    assert response.status == 200 and response.content_type == "text/plain"
    families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    for name in (
        "digit_predictions",
        "digit_predict_seconds",
        "digit_canary_requests",
        "digit_shadow_requests",
        "digit_reads",
        "digit_read_seconds",
        "digit_read_shadow_requests",
        "feedback",
        "feedback_refused",
    ):
        assert name in families, sorted(families)
    assert families["digit_test_probe"].samples[0].value >= 1  # a module-level counter from elsewhere
    assert "process_cpu_seconds" in families  # the default registry's own collectors


@pytest.mark.parametrize("percent", ["-1", "100.5"])
@pytest.mark.parametrize("kind", ["CANARY", "SHADOW"])
def test_a_share_outside_0_to_100_is_refused_at_start(monkeypatch, kind, percent):
    monkeypatch.setenv(f"{kind}_VERSION", "2.0")
    monkeypatch.setenv(f"{kind}_PERCENT", percent)
    with pytest.raises(ValueError, match=f"{kind}_PERCENT must be between 0 and 100"):
        Config.from_env()
