"""Before generating: is every model and data set a command needs reachable from here?

A command that must download (a hub model, a hub benchmark) and cannot (HF_HUB_OFFLINE set, or the hub's
host unreachable) would otherwise fail deep inside transformers or datasets, after their retries (37 s
and a page of retry lines for `spurisweep probe` on a machine without network). `check` answers in
about a second, with one line naming each missing thing and what would serve it instead.

Reachable without the network: a local path; a built-in family (its builder writes the weights here); a
builtin: or local data set, or a benchmark file under SPURISWEEP_DATA_DIR; a hub repository already in
the hub cache (a model's config.json; a data set's snapshot, or its prepared copy in the datasets cache).
Only when something is none of these is the network asked, with one short connection to the hub's host
(HF_ENDPOINT); whether it then downloads is left to the libraries.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse

from ..data import sets as data
from ..errors import DataError

_TRUE = {"1", "true", "yes", "on"}
#: seconds the hub's host gets to accept a connection before this machine counts as offline
CONNECT_TIMEOUT = 1.5


def check(
    *,
    models: Iterable[str | None] = (),
    benchmarks: Iterable[tuple[str, str | None]] = (),
    datasets: Iterable[str] = (),
) -> None:
    """DataError (one line) when a model source, a benchmark (name, its path override) or a data set must
    come from the hub and the hub cannot be reached; nothing when all are here or the hub answers."""
    needs = [n for m in models if m and (n := _model_need(m))]
    needs += [n for b, path in benchmarks if (n := _benchmark_need(b, path))]
    needs += [n for d in datasets if (n := _dataset_need(d))]
    needs = list(dict.fromkeys(needs))  # a benchmark at several fractions or protocols: named once
    if not needs:
        return
    why = offline_reason()
    if why is None:
        return
    raise DataError(f"offline ({why}), and not on this machine: {'; '.join(needs)}")


def offline_reason() -> str | None:
    """Why the hub cannot be reached from here (an offline setting, no connection), or None."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"{var} is set"
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    return None if _connects(host, 443) else f"{host} cannot be reached"


def _connects(host: str, port: int) -> bool:
    """One TCP connection within CONNECT_TIMEOUT, name lookup included (in a thread: getaddrinfo has no
    timeout of its own)."""
    ok: list[bool] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(CONNECT_TIMEOUT + 0.5)
    return bool(ok)


def _model_need(source: str) -> str | None:
    if data.looks_like_path(source) or Path(source).expanduser().exists():
        return None  # a local folder (families.check_model_path judges it)
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(source, "config.json"), str):
        return None
    return (
        f"model {source} (pass a local folder with --model-path or --checkpoint, or download it first: "
        f"hf download {source})"
    )


def _benchmark_need(name: str, path: str | None) -> str | None:
    source = data.benchmark_source(name, path)
    if data.is_local(source) or source.startswith("builtin:"):
        return None
    bench = data.get_benchmark(name)
    hub_ids = [path] if path else [s.hub_id for s in bench.sources]
    if any(_dataset_cached(h) for h in hub_ids):
        return None
    return (
        f"benchmark {name} ({' or '.join(hub_ids)}; set SPURISWEEP_DATA_DIR to a folder with "
        f"{bench.local_name or name + '.json'}, or give its file as a path)"
    )


def _dataset_need(source: str) -> str | None:
    if source.startswith("builtin:") or data.is_local(source) or _dataset_cached(source):
        return None
    return f"data set {source} (pass a local JSON/JSONL/parquet file or a builtin: set)"


def _dataset_cached(repo: str) -> bool:
    """A snapshot in the hub cache, or a prepared copy in the datasets cache (what datasets reads offline)."""
    from huggingface_hub import constants

    hub = Path(constants.HF_HUB_CACHE) / f"datasets--{repo.replace('/', '--')}" / "snapshots"
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    prepared = Path(os.environ.get("HF_DATASETS_CACHE") or home / "datasets") / repo.replace("/", "___")
    return _nonempty(hub) or _nonempty(prepared)


def _nonempty(folder: Path) -> bool:
    try:
        return any(folder.iterdir())
    except OSError:
        return False
