"""First paint of each Studio page in Chromium, on an idle machine, against a one-line app (issue 25).

Each page's first content (navigation to its title drawn) over `--loads` fresh loads, Home, Train,
Compare and Predict in turn, each round also loading a one-line Streamlit app (`st.title`): the
browser's and Streamlit's own floor. With `--against REV`, the Studio of that revision (a
temporary git worktree) is served beside this checkout's and loaded in the same rounds, so the
two are compared side by side under the same conditions. Servers on core 0, Chromium on core 1,
as in scripts/load_test.py, whose helpers this uses; the run stores are empty (fresh clones).

Streamlit's frontend draws what arrives before its first render in one go, so a page's title shows
only when everything the script sent in its first few hundred milliseconds is drawn: a page's
first paint grows with what it draws at once, not with where its title is.

    .venv/bin/python scripts/first_paint.py [--loads 8] [--against HEAD~1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import (  # noqa: E402
    BROWSER_CORE,
    CHROMIUM,
    CHROMIUM_ARGS,
    ONE_LINE_APP,
    PAGES,
    ROOT,
    first_content,
    percentile,
    start_server,
    stop_servers,
)

WARM_UP_ROUNDS = 2  # imports, the data set, model cards: not what a visitor of a warm server waits for


def checkout(rev: str, where: Path) -> Path:
    """A worktree of `rev` sharing this checkout's virtual environment."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(where), rev], check=True)
    (where / ".venv").symlink_to(ROOT / ".venv")
    return where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, default=8, help="timed loads of each page")
    parser.add_argument("--against", metavar="REV", help="also serve the Studio of this git revision, side by side")
    args = parser.parse_args()
    os.sched_setaffinity(0, {BROWSER_CORE})  # this script and the Chromium it starts

    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="fmnist-paint-"))
    (work / "one_line.py").write_text(ONE_LINE_APP)
    servers: list[subprocess.Popen] = []
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, work, ignore_errors=True)
        cleanup.callback(stop_servers, servers)
        trees = {"this checkout": ROOT}
        if args.against:
            trees = {args.against: checkout(args.against, work / "against"), **trees}
            cleanup.callback(subprocess.run, ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "against")])
        server, url = start_server(work / "one-line-runs", work / "one_line.log", script=str(work / "one_line.py"))
        servers.append(server)
        urls = {"one-line app": url}
        for i, (name, root) in enumerate(trees.items()):
            server, url = start_server(work / f"runs-{i}", work / f"studio-{i}.log", root=root)
            servers.append(server)
            urls.update({f"{name}: {page or 'home'}": f"{url}/{page}" for page in PAGES})
        times: dict[str, list[float]] = {label: [] for label in urls}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            for round_ in range(WARM_UP_ROUNDS + args.loads):
                for label, url in urls.items():  # interleaved: a slow moment hits every page alike
                    elapsed = first_content(context, url)
                    if round_ >= WARM_UP_ROUNDS:
                        times[label].append(elapsed)
            browser.close()
    floor = statistics.median(times["one-line app"])
    print(f"First content in Chromium, idle, {args.loads} loads each (server core 0, browser core {BROWSER_CORE}):")
    print(f"{'page':32}{'p50':>8}{'p95':>8}{'p50 vs one-line':>18}")
    for label, values in times.items():
        print(f"{label:32}{statistics.median(values):8.3f}{percentile(values, 0.95):8.3f}{statistics.median(values) / floor:17.2f}x")
    for name in trees:
        values = [t for label, v in times.items() if label.startswith(name + ":") for t in v]
        print(f"{name + ': all pages':32}{statistics.median(values):8.3f}{percentile(values, 0.95):8.3f}{statistics.median(values) / floor:17.2f}x")


if __name__ == "__main__":
    main()
