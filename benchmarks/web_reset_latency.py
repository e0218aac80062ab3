"""Web env speed on MiniWoB++ click-test: reset and step latency, episodes/s, and 8 parallel episodes.

Compared in the same run against baselines on the same machine:
  * BrowserGym's MiniWoB env (`--browsergym-python`: the python of a throwaway venv with
    `pip install browsergym-miniwob`), pointed through PLAYWRIGHT_BROWSERS_PATH at Debian's full `chromium`
    (as the issue prescribes) and, when installed, at Debian's `chromium-headless-shell` (the browser ours uses),
  * a fresh browser per episode (launch, context, page, load), with plain Playwright,
  * a fresh context made at reset time (our env with the spare turned off),
  * ours on Debian's full `chromium` instead of the headless shell.
Ours makes a fresh context per episode. While the browser is idle (`--think` seconds of simulated agent time
per turn, an LLM call) it prepares the next one with its task page loaded, so such a reset only starts the task.
Back-to-back rows (no agent time) get nothing prepared: the reset makes its context, and steps never share the
cores with background work.

    .venv/bin/python benchmarks/web_reset_latency.py [--episodes 12] [--think 1.0] \
        [--browsergym-python /tmp/bgvenv/bin/python]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from reflectgym.envs.web.browser import BrowserConfig
from reflectgym.envs.web.chromium import CHROMIUM_FLAGS, find_chromium
from reflectgym.envs.web.env import MiniWoBEnv
from reflectgym.envs.web.miniwob import MiniWoBPages

Row = tuple[str, float, float | None, float | None, str]
"""A table row: name, reset s, step s (or None), episodes/s (or None), solved."""


def run_env(env: MiniWoBEnv, episodes: int, think: float) -> tuple[list[float], list[float], float, int]:
    """Plays `episodes` oracle episodes; returns reset times, step times, episodes/s and successes."""
    resets, steps, wins = [], [], 0
    env.reset(seed=10_000)  # launch and warm up outside the timing
    time.sleep(1.0)
    started = time.perf_counter()
    for seed in range(episodes):
        t = time.perf_counter()
        env.reset(seed=seed)
        resets.append(time.perf_counter() - t)
        terminated = truncated = False
        reward = 0.0
        while not (terminated or truncated):
            time.sleep(think)
            action = env.oracle_action()
            t = time.perf_counter()
            _, reward, terminated, truncated, _ = env.step(action)
            steps.append(time.perf_counter() - t)
        wins += reward == 1.0
    return resets, steps, episodes / (time.perf_counter() - started), wins


def fresh_browser_resets(task: str, episodes: int, think: float) -> list[float]:
    """Reset = launch a Chromium, open a context and page, load the task and start it (then close all)."""
    from playwright.async_api import async_playwright

    url = (MiniWoBPages.locate().root / "miniwob" / f"{task}.html").as_uri()
    executable = find_chromium()

    async def main() -> list[float]:
        times = []
        async with async_playwright() as playwright:
            for seed in range(episodes):
                t = time.perf_counter()
                browser = await playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_FLAGS))
                page = await (await browser.new_context()).new_page()
                await page.goto(url)
                await page.evaluate("(s) => { Math.seedrandom(s); core.startEpisodeReal(); }", seed)
                times.append(time.perf_counter() - t)
                await asyncio.sleep(think)
                await browser.close()
        return times

    return asyncio.run(main())


BROWSERGYM_SNIPPET = """
import json, statistics, sys, time
import gymnasium as gym
import browsergym.miniwob  # registers browsergym/miniwob.*
from browsergym.utils.obs import flatten_axtree_to_str
task, episodes = sys.argv[1], int(sys.argv[2])
env = gym.make(f"browsergym/miniwob.{task}")
env.reset(seed=999)
resets, steps, wins = [], [], 0
start = time.perf_counter()
for seed in range(episodes):
    t = time.perf_counter(); obs, info = env.reset(seed=seed); resets.append(time.perf_counter() - t)
    tree = flatten_axtree_to_str(obs["axtree_object"])
    bid = next(line.split("]")[0].split("[")[-1] for line in tree.splitlines() if "button" in line)
    t = time.perf_counter(); obs, reward, *_ = env.step(f'click("{bid}")'); steps.append(time.perf_counter() - t)
    wins += reward > 0
rate = episodes / (time.perf_counter() - start)
env.close()
result = {"reset": statistics.median(resets), "step": statistics.median(steps), "rate": rate, "wins": int(wins)}
print(json.dumps(result))
"""


def browsergym(python: str, task: str, episodes: int, executable: str) -> dict[str, float] | None:
    """Runs BrowserGym's MiniWoB env in its own venv on the Chromium `executable`; `None` if it cannot run."""
    found = subprocess.run(
        [python, "-c", "import playwright, pathlib; print(pathlib.Path(playwright.__file__).parent)"],
        capture_output=True,
        text=True,
    )
    if found.returncode:
        print(f"BrowserGym baseline skipped: {found.stderr.strip()[-200:]}")
        return None
    browsers = json.loads((Path(found.stdout.strip()) / "driver/package/browsers.json").read_text())
    revision = next(b["revision"] for b in browsers["browsers"] if b["name"] == "chromium")
    with tempfile.TemporaryDirectory() as folder:
        chrome = Path(folder) / f"chromium-{revision}" / "chrome-linux" / "chrome"
        chrome.parent.mkdir(parents=True)
        chrome.symlink_to(Path(executable).resolve())
        env = dict(os.environ, PLAYWRIGHT_BROWSERS_PATH=folder)
        env["MINIWOB_URL"] = (MiniWoBPages.locate().root / "miniwob").as_uri() + "/"
        done = subprocess.run(
            [python, "-c", BROWSERGYM_SNIPPET, task, str(episodes)], capture_output=True, text=True, env=env
        )
    if done.returncode:
        print(f"BrowserGym baseline failed: {done.stderr.strip()[-300:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def parallel(task: str, workers: int, episodes_each: int) -> tuple[float, int, int]:
    """`workers` envs in threads sharing one browser: episodes/s, successes, errors."""
    envs = [MiniWoBEnv(task=task) for _ in range(workers)]
    wins: list[int] = []
    errors: list[BaseException] = []

    def play(index: int) -> None:
        try:
            for episode in range(episodes_each):
                envs[index].reset(seed=index * 1000 + episode)
                for _ in range(5):
                    _, reward, terminated, truncated, _ = envs[index].step(envs[index].oracle_action())
                    if terminated or truncated:
                        wins.append(int(reward == 1.0))
                        break
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=play, args=(index,)) for index in range(workers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rate = workers * episodes_each / (time.perf_counter() - started)
    for env in envs:
        env.close()
    return rate, sum(wins), len(errors)


def load_average() -> str:
    """The 1-minute load average (other jobs on the machine skew every row)."""
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def env_row(name: str, env: MiniWoBEnv, episodes: int, think: float) -> Row:
    """One table row: `episodes` oracle episodes of `env`."""
    resets, steps, rate, wins = run_env(env, episodes, think)
    return (name, statistics.median(resets), statistics.median(steps), rate, f"{wins}/{episodes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--task", default="click-test")
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--think", type=float, default=1.0, help="simulated agent time before each step (s)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--browsergym-python", default=os.environ.get("BROWSERGYM_PYTHON"))
    args = parser.parse_args()
    ours_browser = find_chromium() or "Playwright's own Chromium"
    full_chromium = shutil.which("chromium")
    load_before = load_average()

    rows: list[Row] = []
    ours = MiniWoBEnv(task=args.task)
    rows.append(env_row(f"ours, agent-paced ({args.think:g} s per turn)", ours, args.episodes, args.think))
    rows.append(env_row("ours, back-to-back", ours, args.episodes, 0.0))
    ours.close()
    for name, config in [
        ("fresh context made at reset (no spare)", BrowserConfig(spare_contexts=0)),
        ("ours, back-to-back, on Debian's full chromium", BrowserConfig(executable=full_chromium)),
    ]:
        if config.executable is not None and (full_chromium is None or full_chromium == ours_browser):
            continue
        env = MiniWoBEnv(task=args.task, browser=config)
        rows.append(env_row(name, env, args.episodes, 0.0))
        env.close()
        env.service.shutdown()
    fresh = fresh_browser_resets(args.task, max(4, args.episodes // 2), 0.0)
    rows.append(("fresh browser per episode (Playwright)", statistics.median(fresh), None, None, "-"))
    gym_browsers = {"Debian chromium": full_chromium, "headless shell": find_chromium()}
    for label, executable in gym_browsers.items() if args.browsergym_python else ():
        result = browsergym(args.browsergym_python, args.task, max(4, args.episodes // 2), executable or "")
        if executable and result is not None:
            wins = f"{result['wins']}/{max(4, args.episodes // 2)}"
            rows.append((f"BrowserGym miniwob ({label})", result["reset"], result["step"], result["rate"], wins))
    par_rate, par_wins, par_errors = parallel(args.task, args.workers, 3)

    print(f"MiniWoB++ {args.task}, {args.episodes} episodes per row of ours, {os.cpu_count()} cores")
    print(f"ours runs {ours_browser}; load average {load_before} before, {load_average()} after")
    print(f"{'':48} {'reset ms':>9} {'step ms':>8} {'episodes/s':>10} {'solved':>7}")
    for name, reset, step, episodes_per_s, solved in rows:
        step_text = f"{step * 1000:8.1f}" if step is not None else f"{'-':>8}"
        rate_text = f"{episodes_per_s:10.2f}" if episodes_per_s is not None else f"{'-':>10}"
        print(f"{name:48} {reset * 1000:9.1f} {step_text} {rate_text} {solved:>7}")
    paced, back_to_back = rows[0], rows[1]
    for name, reset, step, *_ in rows[2:]:
        line = f"vs {name}: reset {reset / paced[1]:.1f}x faster agent-paced"
        line += f", {reset / back_to_back[1]:.1f}x back-to-back"
        if step is not None and back_to_back[2] is not None:
            line += f"; step {step / back_to_back[2]:.1f}x faster back-to-back"
        print(line)
    print(
        f"parallel: {args.workers} envs in threads, one browser: {par_rate:.2f} episodes/s, "
        f"{par_wins}/{args.workers * 3} solved, {par_errors} errors"
    )


if __name__ == "__main__":
    main()
