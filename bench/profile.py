"""`python -m bench --profile`: where the gateway's own time goes, per scenario (cProfile).

Runs in a child process (`bench.worker profile`), like figure 2, and writes one
text report per scenario, sorted by cumulative time, next to the results.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import re
from pathlib import Path
from typing import Any

from bench.gateway_time import REPLAY_KEYS, scenarios
from bench.inproc import Gateway


def measure(gateway: Gateway, key: str, out_dir: str, requests: int, ids: int) -> dict[str, Any]:
    plan = scenarios(key, ids)
    gateway.panel.prepare_statuses(range(23501, 23501 + ids))
    for s in plan:  # warm-up as in figure 2 (the replay keys are placed here)
        for n in range(REPLAY_KEYS if s.name.startswith("POST /orders (replay") else 1):
            gateway.call(s.make(n))
    written = []
    for s in plan:
        profiler = cProfile.Profile()
        count = s.count(requests, max(1, requests // 30))
        events = [s.make(n) for n in range(count)]
        profiler.enable()
        for ev in events:
            gateway.call(ev)
        profiler.disable()
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(25)
        path = Path(out_dir) / f"profile-{re.sub(r'[^a-z0-9]+', '-', s.name.lower()).strip('-')}.txt"
        path.write_text(f"{s.name}: {count} requests\n{text.getvalue()}")
        written.append(str(path))
    return {"files": written}
