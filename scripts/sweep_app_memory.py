"""Memory of the app's server process before and while a sweep launched from its Sweep page runs.

    .venv/bin/python scripts/sweep_app_memory.py [--epochs 2] [--subset 10000]

Starts `streamlit run` on a free port with an empty run store, opens the Sweep page in
Chromium, reads the server's resident memory, launches a 2-trial cnn_c sweep from the page
and samples the server's memory (and, for comparison, the sweep's own processes: driver,
Ray and trials) every second until the sweep ends.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fmnist_core.base.statuses import SWEEP_ENDED  # noqa: E402
from fmnist_core.store.run_store import RunStore  # noqa: E402
from fmnist_core.sweeps.sweep_store import SweepStore  # noqa: E402
from tests.e2e.test_sweep_browser import fill  # noqa: E402
from tests.helpers.server import CHROMIUM, CHROMIUM_ARGS, StreamlitServer  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    children = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(proc.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--subset", type=int, default=10000)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        server = StreamlitServer(Path(folder) / "runs", Path(folder) / "streamlit.log").start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{server.url}/sweep")
                page.get_by_text("No sweeps yet").wait_for(timeout=60_000)
                time.sleep(2)
                idle = rss_mb(server.process.pid)
                fill(page, "values, comma-separated", "0.01, 0.05")
                fill(page, "Epochs per trial", args.epochs)
                page.get_by_text("Quick try").click()
                fill(page, "Train and test on the first N images (0 = all)", args.subset)
                page.get_by_role("button", name="Launch sweep").click()
                sweeps = SweepStore(RunStore(Path(folder) / "runs"))
                server_peak = sweep_peak = 0.0
                deadline = time.time() + 900
                while time.time() < deadline:
                    time.sleep(1)
                    server_peak = max(server_peak, rss_mb(server.process.pid))
                    others = [q for q in tree(server.process.pid) if q != server.process.pid]
                    sweep_peak = max(sweep_peak, sum(rss_mb(q) for q in others if Path(f"/proc/{q}").exists()))
                    ids = sweeps.ids()
                    if ids and sweeps.read(ids[0]).status in SWEEP_ENDED:
                        break
                record = sweeps.read(sweeps.ids()[0])
                browser.close()
        finally:
            server.stop()
    print(f"server process, Sweep page open, idle: {idle:.0f} MB")
    print(f"server process, peak while the sweep ran: {server_peak:.0f} MB (+{server_peak - idle:.0f} MB)")
    print(f"the sweep's own processes (driver, Ray, 2 trials), peak sum of RSS: {sweep_peak:.0f} MB")
    print(f"sweep {record.id}: {record.status} in {record.seconds:.0f} s, Ray started in {record.ray_start_s:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
