"""Load test of shared mode (issue 11, "Load"): is the Studio still quick with a class on it?

Starts `streamlit run` in shared mode pinned to core 0 (taskset -c 0) with a run store of
its own, and drives Chromium from core 1, so the browsers' own work does not count:

1. alone: first content of 20 page loads with nobody else on the server, then one cnn_c
   run trained through the Train page with only its own session open (images/s per epoch);
2. loaded: two visitors start a training each, 8 more sessions open the Train page (10 in
   all, each polling its live run), and 20 page loads (Home, Train, Compare, Predict in
   turn) are timed while the first training runs (in the server one run trains at a time,
   so the second waits in the queue; on a cluster both train at once): the first is
   set to many more epochs than needed, so it is still training when the loads end, and
   its first `--epochs` epochs are compared with the run alone. The server, and the
   trainings with it, are stopped at the end.

First content is the time from navigation to the page's title (its first element)
being drawn. Three views of it, each phase:
- in the browser (Chromium, core 1), and, measured the same way in the same phase, a one-line
  Streamlit app (`st.title`) served from core 0 too: the browser's and Streamlit's own floor;
- server-side: a client that speaks Streamlit's websocket protocol and draws nothing (pinned
  to core 0, beside the server) times the connection's opening to the page's title arriving
  (an h1 heading delta), so it does not depend on the browsers sharing a core.
While loaded, the server's and the browsers' CPU over a 20 s window, with the open Train
sessions polling their live run (each once a second), is divided into CPU per poll.

`--cluster N` trains on a local Ray cluster of N one-CPU nodes (`ray.cluster_utils.Cluster`,
on core 1 at nice 19: it stands for other machines, and the browsers come first) through FMNIST_RAY_ADDRESS, as
`make share RAY=...` does: the server then only serves pages, and the two trainings run at
once. Goals: locally, p50 <= 1 s and p95 <= 2 s loaded in the browser, and the trainings at
>= 90% of the images/s of the run alone; on a cluster (issue 25), server-side p95 <= 0.3 s
loaded and the browser's p50 within 1.3x of the one-line app's.

    .venv/bin/python scripts/load_test.py [--sessions 10] [--loads 20] [--epochs 2] [--cluster 2] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the project's modules are not on the path

from fmnist_core.base.files import process_cpu_seconds  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGES = ["", "train", "compare", "predict"]  # "" is Home
SERVER_CORE, BROWSER_CORE = 0, 1
LONG_EPOCHS = 100  # the first loaded training's epochs: more than the loads can outlast
ONE_LINE_APP = 'import streamlit as st\n\nst.title("One line")\n'
POLL_WINDOW_S = 20


def progress(text: str) -> None:
    """Where the test is, on stderr: a loaded phase can take many minutes on two cores."""
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(runs_dir: Path, log: Path, ray_address: str | None = None, script: str = "streamlit_app.py",
                 root: Path = ROOT) -> tuple[subprocess.Popen, str]:
    """`streamlit run script` in shared mode from `root` (a checkout), pinned to the server's core."""
    port = free_port()
    env = {**os.environ, "FMNIST_RUNS_DIR": str(runs_dir), "FMNIST_STUDIO_MODE": "shared"}
    env.pop("FMNIST_RAY_ADDRESS", None)
    if ray_address:
        env["FMNIST_RAY_ADDRESS"] = ray_address
    process = subprocess.Popen(
        ["taskset", "-c", str(SERVER_CORE), sys.executable, "-m", "streamlit", "run", script,
         "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=root, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"streamlit exited; see {log}")
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return process, url
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"streamlit did not become healthy in 120 s; see {log}")


def open_train(context, url: str):
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{url}/train")
    page.wait_for_selector("h1")
    return page


def start_training(page, runs_dir: Path, name: str, epochs: int) -> None:
    """Through the form, as a visitor does: cnn_c (the form's default), `epochs` epochs;
    returns once the run is in the store."""
    for label, value in (("Epochs", epochs), ("Run name", name)):
        page.get_by_label(label, exact=True).fill(str(value))
        page.get_by_label(label, exact=True).press("Enter")
        time.sleep(0.8)
    start = page.get_by_role("button", name="Start training")
    try:
        start.click(timeout=60_000)
    except Exception as e:  # say why the page would not start it
        page.screenshot(path=str(runs_dir.parent / "start-refused.png"))
        why = page.locator("[data-testid=stAlert], [data-testid=stCaptionContainer]").all_inner_texts()
        raise SystemExit(f"the Train page did not start {name!r}: {type(e).__name__}; the page says {why}") from None
    deadline = time.time() + 60
    while not any(json.loads(p.read_text())["name"] == name for p in runs_dir.glob("*/run.json")):
        if time.time() > deadline:
            raise SystemExit(f"the Train page did not start {name!r}; is a limit in the way?")
        time.sleep(0.2)


def first_content(context, url: str) -> float:
    """Seconds from navigating a new page of `context` to `url` until its title (h1) is drawn."""
    page = context.new_page()
    start = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_selector("h1", timeout=120_000)
    elapsed = time.perf_counter() - start
    page.close()
    return elapsed


def first_content_times(browser, url: str, one_line_url: str, loads: int) -> tuple[list[float], list[float]]:
    """Seconds from navigation to each page's title, over `loads` fresh page loads of the
    Studio (its pages in turn), each followed by one of the one-line app: both under the
    same load at the same moments."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    studio, one_line = [], []
    try:
        for i in range(loads):
            for address, times in ((f"{url}/{PAGES[i % len(PAGES)]}", studio), (one_line_url, one_line)):
                times.append(first_content(context, address))
            progress(f"load {i + 1}/{loads}: Studio {studio[-1]:.2f} s, one-line app {one_line[-1]:.2f} s")
    finally:
        context.close()
    return studio, one_line


def protocol_first_content(url: str, page: str) -> float:
    """Server-side first content: seconds from opening a websocket session, as the browser
    does (subprotocol "streamlit", same origin), and asking for `page` to the page's title
    (an h1 heading delta) arriving. Nothing is drawn."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.sync.client import connect

    start = time.perf_counter()
    with connect(f"ws://{url.split('://', 1)[1]}/_stcore/stream", subprotocols=["streamlit"], origin=url,
                 max_size=None, open_timeout=120, close_timeout=1) as ws:
        rerun = BackMsg()
        rerun.rerun_script.page_name = page
        ws.send(rerun.SerializeToString())
        while True:
            message = ForwardMsg()
            message.ParseFromString(ws.recv(timeout=120))
            kind = message.WhichOneof("type")
            if kind == "script_finished":
                raise SystemExit(f"page {page!r} finished without a title")
            if kind == "delta" and message.delta.WhichOneof("type") == "new_element":
                element = message.delta.new_element
                if element.WhichOneof("type") == "heading" and element.heading.tag == "h1":
                    return time.perf_counter() - start


def server_side_times(url: str, loads: int) -> list[float]:
    """`loads` protocol-level first contents (the Studio's pages in turn), from a process
    pinned to the server's core: the browsers' core does not delay it."""
    out = subprocess.run(["taskset", "-c", str(SERVER_CORE), sys.executable, __file__, "--probe", url, "--loads", str(loads)],
                         capture_output=True, text=True, timeout=1200, check=True)
    return json.loads(out.stdout)


def chromium_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and "chrom" in (entry / "comm").read_text():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """CPU time these processes have used so far (a process gone since counts 0)."""
    return sum(process_cpu_seconds(pid) or 0.0 for pid in pids)


def cpu_per_poll(server_pid: int, sessions: int) -> dict:
    """CPU-ms per live-panel poll, the server's and the browsers', over POLL_WINDOW_S with
    `sessions` Train pages each polling every REFRESH_SECONDS (and nothing else asked of the server)."""
    from ui.live_panel import REFRESH_SECONDS  # here: the page's module imports torch and Streamlit (2 s)

    browsers = chromium_pids()
    server0, browsers0 = cpu_seconds([server_pid]), cpu_seconds(browsers)
    time.sleep(POLL_WINDOW_S)
    server1, browsers1 = cpu_seconds([server_pid]), cpu_seconds(browsers)
    polls = sessions * POLL_WINDOW_S / REFRESH_SECONDS
    return {"server_ms": round(1000 * (server1 - server0) / polls, 1), "browsers_ms": round(1000 * (browsers1 - browsers0) / polls, 1)}


def run_history(runs_dir: Path, name: str) -> list[dict]:
    for info_file in runs_dir.glob("*/run.json"):
        if json.loads(info_file.read_text())["name"] == name:
            history = info_file.parent / "history.jsonl"
            return [json.loads(line) for line in history.read_text().splitlines()] if history.exists() else []
    raise SystemExit(f"no run named {name!r}")


def wait_for_epochs(runs_dir: Path, name: str, epochs: int, timeout: float = 1800) -> list[dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        history = run_history(runs_dir, name)
        if len(history) >= epochs:
            return history
        time.sleep(1)
    raise SystemExit(f"{name} did not finish {epochs} epochs in {timeout:.0f} s")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def images_per_s(history: list[dict]) -> list[float]:
    return [round(h["images_per_s"]) for h in history]


CLUSTER_CHILD = """
import sys
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
for _ in range(int(sys.argv[1])):
    cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
print("RAY ADDRESS", cluster.address, flush=True)
sys.stdin.read()  # until the load test closes it
cluster.shutdown()
"""


@contextlib.contextmanager
def local_cluster(nodes: int):
    """A Ray cluster of `nodes` one-CPU nodes and a head with none, for the Train page's runs.
    It stands for other machines, and this one has two cores: its processes run on the
    browsers' core at nice 19, so the browsers (the class's own machines) come first and
    the server's core stays the server's. Started by a child process of its own (Cluster
    needs its creator alive), which shuts it down when its stdin closes."""
    child = subprocess.Popen(["taskset", "-c", str(BROWSER_CORE), "nice", "-n", "19", sys.executable, "-c", CLUSTER_CHILD, str(nodes)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        for line in child.stdout:
            if line.startswith("RAY ADDRESS "):
                yield line.split()[-1]
                break
        else:
            raise SystemExit("the local Ray cluster did not start")
    finally:
        child.stdin.close()
        child.wait(120)


def stop_servers(servers: list[subprocess.Popen]) -> None:
    for server in servers:
        server.terminate()
        server.wait(30)


def probe(url: str, loads: int) -> None:
    """--probe: print `loads` server-side first contents as JSON (after one warm-up each page)."""
    for page in PAGES:
        protocol_first_content(url, page)
    print(json.dumps([protocol_first_content(url, PAGES[i % len(PAGES)]) for i in range(loads)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10, help="sessions on the Train page while loaded")
    parser.add_argument("--loads", type=int, default=20, help="timed page loads per phase")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each cnn_c training")
    parser.add_argument("--cluster", type=int, default=0, metavar="NODES", help="train on a local Ray cluster of NODES one-CPU nodes (0: in the server)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--probe", metavar="URL", help=argparse.SUPPRESS)  # the server-side client, in a process of its own
    args = parser.parse_args()
    if args.probe:
        return probe(args.probe, args.loads)
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores: the server on core 0, the browsers on core 1")
    os.sched_setaffinity(0, {BROWSER_CORE})  # this script and the Chromium (and the Ray cluster) it starts

    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="fmnist-load-"))
    runs_dir = work / "runs"
    (work / "one_line.py").write_text(ONE_LINE_APP)
    servers = []
    figures: dict = {}
    with contextlib.ExitStack() as cleanup:
        ray_address = cleanup.enter_context(local_cluster(args.cluster)) if args.cluster else None
        cleanup.callback(stop_servers, servers)
        server, url = start_server(runs_dir, work / "streamlit.log", ray_address)
        servers.append(server)
        one_line, one_line_url = start_server(work / "one-line-runs", work / "one_line.log", script=str(work / "one_line.py"))
        servers.append(one_line)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            first_content_times(browser, url, one_line_url, 4)  # warm-up: imports, the data set, model cards
            figures["first_content_alone_s"], figures["one_line_alone_s"] = first_content_times(browser, url, one_line_url, args.loads)
            figures["server_side_alone_s"] = server_side_times(url, args.loads)
            progress("alone: loads done")

            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            start_training(open_train(context, url), runs_dir, "alone", args.epochs)
            figures["alone_images_per_s"] = images_per_s(wait_for_epochs(runs_dir, "alone", args.epochs))
            progress("alone: training done")
            context.close()

            contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(args.sessions)]
            start_training(open_train(contexts[0], url), runs_dir, "loaded 1", LONG_EPOCHS)
            start_training(open_train(contexts[1], url), runs_dir, "loaded 2", args.epochs)
            for context in contexts[2:]:
                open_train(context, url)  # each shows a running run, polling it every second
            progress("loaded: sessions open")
            if args.cluster:  # the server does no training: its CPU is the pages'
                figures["cpu_per_poll"] = cpu_per_poll(server.pid, args.sessions)
            figures["first_content_loaded_s"], figures["one_line_loaded_s"] = first_content_times(browser, url, one_line_url, args.loads)
            figures["server_side_loaded_s"] = server_side_times(url, args.loads)
            if len(run_history(runs_dir, "loaded 1")) >= LONG_EPOCHS:
                raise SystemExit("the first training ended before the page loads did: the loads were not all under load")
            figures["loaded_images_per_s"] = [images_per_s(wait_for_epochs(runs_dir, "loaded 1", args.epochs)[: args.epochs])]
            for context in contexts:
                context.close()
            browser.close()
    shutil.rmtree(work, ignore_errors=True)
    report(figures, args)


def report(figures: dict, args) -> None:
    alone = statistics.mean(figures["alone_images_per_s"])
    loaded = [statistics.mean(r) for r in figures["loaded_images_per_s"]]
    summary: dict = {"cluster_nodes": args.cluster}
    for view in ("first_content", "one_line", "server_side"):
        for phase in ("alone", "loaded"):
            for q in (50, 95):
                summary[f"{view}_{phase}_p{q}_s"] = round(percentile(figures[f"{view}_{phase}_s"], q / 100), 3)
    summary.update({
        "browser_vs_one_line_loaded_p50": round(summary["first_content_loaded_p50_s"] / summary["one_line_loaded_p50_s"], 2),
        "alone_images_per_s": round(alone),
        "loaded_images_per_s": [round(x) for x in loaded],
        "loaded_vs_alone": [round(x / alone, 3) for x in loaded],
        "cpu_per_poll_ms": figures.get("cpu_per_poll"),
    })
    if args.json:
        print(json.dumps({**summary, "raw": figures}, indent=2))
        return
    where = f"on a local Ray cluster of {args.cluster} one-CPU nodes (core {BROWSER_CORE})" if args.cluster else "in the server"
    print(f"Shared mode, server on core {SERVER_CORE}, {args.sessions} sessions on the Train page, two cnn_c trainings "
          f"{where}; browsers on core {BROWSER_CORE}.")
    print(f"{'first content (s)':36}{'p50':>8}{'p95':>8}")
    for phase in ("alone", "loaded"):
        for view, label in (("first_content", "browser, the Studio"), ("one_line", "browser, a one-line app"), ("server_side", "server-side, the Studio")):
            times = figures[f"{view}_{phase}_s"]
            print(f"{phase + ', ' + label:36}{percentile(times, 0.5):>8.3f}{percentile(times, 0.95):>8.3f}   ({len(times)} loads)")
    if figures.get("cpu_per_poll"):
        print(f"CPU per live-panel poll: server {figures['cpu_per_poll']['server_ms']} ms, browsers {figures['cpu_per_poll']['browsers_ms']} ms "
              f"({args.sessions} sessions, {POLL_WINDOW_S} s)")
    print(f"training alone: {figures['alone_images_per_s']} images/s per epoch")
    for i, (epochs, ratio) in enumerate(zip(figures["loaded_images_per_s"], summary["loaded_vs_alone"]), 1):
        print(f"training {i} loaded: {epochs} images/s per epoch ({100 * ratio:.0f}% of alone)")
    if args.cluster:
        ok = summary["server_side_loaded_p95_s"] <= 0.3 and summary["browser_vs_one_line_loaded_p50"] <= 1.3
        print(f"goal (server-side p95 <= 0.3 s loaded; browser p50 <= 1.3x the one-line app's, here "
              f"{summary['browser_vs_one_line_loaded_p50']}x):", "met" if ok else "NOT met")
    else:
        ok = (summary["first_content_loaded_p50_s"] <= 1 and summary["first_content_loaded_p95_s"] <= 2
              and min(summary["loaded_vs_alone"]) >= 0.9)
        print("goal (p50 <= 1 s, p95 <= 2 s, trainings >= 90% of alone):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()
