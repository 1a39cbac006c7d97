"""The web app's settings (web/app.py init_app takes them), from the environment (docs/configuration.md)."""

import os
from dataclasses import dataclass
from pathlib import Path

from web.feedback_store import DEFAULT_DB
from web.ratelimit import LimitConfig
from web.readiness import INTERVAL as READY_INTERVAL
from web.tickets import Tickets
from web.traffic import TrafficConfig
from web.uploads import UploadLimits


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 5500
    inference_url: str = "http://127.0.0.1:8080"
    management_url: str = "http://127.0.0.1:8081"  # only its /token endpoint, to renew the inference key
    run_dir: Path = Path("run")  # TorchServe's working directory: key_file.json and config snapshots
    model: str = "mnist"
    max_body: int = 1024 * 1024  # a 280x280 canvas data URL is 10-50 KB
    # A prediction takes milliseconds; this bounds a hung backend, and outlasts a worker's restart: the
    # drawings a killed worker held are asked again and wait at TorchServe for its replacement (3.6-6.4 s
    # on 2 busy cores, docs/limits.md "A worker killed under load"), as TorchServe's own responseTimeout does.
    timeout: float = 10.0
    connect_timeout: float = 0.5
    pool_size: int = 64
    max_batch: int = 8  # drawings per request to TorchServe (web/batching.py)
    # Requests of one version at TorchServe at once: one at the worker and one queued behind it, sent
    # once it is as large as the one ahead (web/batching.py). With more workers (GPU nodes), workers + 1.
    batches_in_flight: int = 2
    feedback_db: str = DEFAULT_DB  # a SQLite path or a database URL (web/feedback_store.py)
    traffic: TrafficConfig = TrafficConfig()  # canary and shadow versions (web/traffic.py)
    limits: LimitConfig = LimitConfig()  # per client and route (web/ratelimit.py)
    tickets: Tickets = Tickets()  # signs answers for feedback (web/tickets.py)
    uploads: UploadLimits = UploadLimits()  # bodies' deadline and bytes in flight (web/uploads.py)
    ready_interval: float = READY_INTERVAL  # seconds between /readyz's probes at most (web/readiness.py)

    @classmethod
    def from_env(cls) -> "Config":
        env = os.environ
        return cls(
            host=env.get("WEB_HOST", cls.host),  # 0.0.0.0 in the container (deploy/Containerfile)
            port=int(env.get("WEB_PORT", cls.port)),
            inference_url=env.get("TS_INFERENCE_URL", cls.inference_url),
            management_url=env.get("TS_MANAGEMENT_URL", cls.management_url),
            run_dir=Path(env.get("TS_RUN_DIR", cls.run_dir)),
            timeout=float(env.get("WEB_TIMEOUT", cls.timeout)),
            max_batch=int(env.get("WEB_MAX_BATCH", cls.max_batch)),
            batches_in_flight=int(env.get("WEB_BATCHES_IN_FLIGHT", cls.batches_in_flight)),
            feedback_db=env.get("FEEDBACK_DB", cls.feedback_db),
            traffic=TrafficConfig.from_env(),
            limits=LimitConfig.from_env(),
            tickets=Tickets.from_env(),
            uploads=UploadLimits.from_env(),
            ready_interval=float(env.get("WEB_READY_INTERVAL", cls.ready_interval)),
        )
