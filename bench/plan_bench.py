"""Plan a night for all 1,741 Japanese municipalities and print how long it took.

Populations are synthetic but shaped like Japan's (log-normal, median about
25,000, a few cities in the millions, 1,741 in all); volumes follow
population as in config/examples/fleet-kyushu.toml. Eight regional links
of 5 Mbit/s (tight on purpose, so that the planner has to work) carry them
to one receiver with 32 streams. The issue asks for under a second.

    .venv/bin/python bench/plan_bench.py
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

from drsync.plan import fleet_from_dict, plan_fleet

MUNICIPALITIES = 1741
REGIONS = ("hokkaido", "tohoku", "kanto", "chubu", "kinki", "chugoku", "shikoku", "kyushu")


def japan(seed: int = 1741) -> dict[str, Any]:
    rng = random.Random(seed)
    tenants = []
    for i in range(MUNICIPALITIES):
        population = int(min(3_700_000, max(200, rng.lognormvariate(math.log(25_000), 1.3))))
        tenants.append({
            "name": f"m{i:04d}",
            "population": population,
            "link": REGIONS[i % len(REGIONS)],
            "priority": 1 if population >= 200_000 else 2 if population >= 20_000 else 3,
            "compress_mb_per_s": 40 if population >= 200_000 else 10,
        })
    return {
        "window": {"start": "23:00", "minutes": 180},
        "link": [{"name": r, "mbit_per_s": 5, "stream_mbit_per_s": 4} for r in REGIONS],
        "receiver": {"max_streams": 32},
        "defaults": {"daily_kb_per_resident": 2.4, "compression_ratio": 6.0, "overlap": True,
                     "setup_s": 120},
        "tenant": tenants,
    }


def main() -> None:
    fleet = fleet_from_dict(japan(), source="japan-1741")
    start = time.perf_counter()
    plan = plan_fleet(fleet)
    elapsed = time.perf_counter() - start
    util = ", ".join(f"{ld.name} {100 * ld.utilisation:.0f}%" for ld in plan.links)
    print(f"planned {len(fleet.tenants)} municipalities on {len(fleet.links)} links in "
          f"{elapsed:.3f} s: {plan.fits} fit, last byte at {plan.makespan_s:.0f} s; {util}")


if __name__ == "__main__":
    main()
