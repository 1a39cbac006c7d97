"""What the stack's processes report and spend: Prometheus samples, TorchServe's per-batch handler times,
CPU seconds per process (bench/latency.py takes them before and after each load run)."""

import re
import urllib.request
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families


def prometheus(url: str) -> dict:
    """Every sample of url/metrics summed over its labels, by sample name (the parser ends every counter
    sample in _total, also where the text has none)."""
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    totals = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def handler_times(log: Path, offset: int) -> tuple[float, float]:
    """(handler ms per image, images per batch) logged since offset. HandlerTime is a gauge in Prometheus
    (the last batch only); ts_log.log has a [METRICS] line per batch: "HandlerTime.Milliseconds:1.23|...
    |#hostname:vm,<timestamp>,<request id>,<request id>,..." (the default config logs each twice)."""
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    pattern = r"HandlerTime\.\w+:([0-9.]+)\|[^\n]*?#hostname:[^,\n]*,\d+,([^\n]*?),? pattern"
    batches = {ids: float(ms) for ms, ids in re.findall(pattern, text)}
    images = sum(len(ids.split(",")) for ids in batches)
    return (sum(batches.values()) / images, images / len(batches)) if images else (float("nan"),) * 2


def cpu_seconds(pids: dict) -> dict:
    """User + system CPU seconds so far of each named pid (None: 0), plus "workers": the descendants of
    pids["frontend"] (TorchServe's Python workers)."""

    def of(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
            return times.user + times.system
        except psutil.Error:
            return 0.0

    seconds = {name: of(psutil.Process(pid)) if pid else 0.0 for name, pid in pids.items()}
    frontend = pids.get("frontend")
    seconds["workers"] = (
        sum(of(c) for c in psutil.Process(frontend).children(recursive=True)) if frontend else 0
    )
    return seconds
