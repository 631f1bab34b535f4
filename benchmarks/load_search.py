"""Load: a search of many short trials; the driver's memory as trials finish, and every trial in MLflow once.

    python benchmarks/load_search.py [--trials 200] [--concurrency 2]

Runs `python -m tune_codec.run` as its own process on the bundled demo corpus with a tiny codec (2 epochs of
2 steps), samples the driver's resident memory every second, and prints it against trials finished. Then
reads MLflow back: one child run per trial, each FINISHED with each epoch logged once. Exits 1 if not.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import base_space, memory_mib, search_cmd, start, table, wait, write_space
from mlflow.tracking import MlflowClient

EPOCHS = 2


def load_space(trials: int, concurrency: int) -> dict:
    space = base_space("smoke")
    space["config"].update(num_epochs=EPOCHS, max_steps_per_epoch=2)
    space["stop"]["grace_epochs"] = EPOCHS
    space.update(trials=trials, concurrency=concurrency, start=[])
    return space


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=2)
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="tune-codec-load-"))
    cmd = search_cmd(write_space(work, "load", load_space(args.trials, args.concurrency)), work)
    state = work / "ray" / "load.mlflow_runs.json"
    print(f"$ {' '.join(cmd)}", flush=True)
    t0 = time.monotonic()
    samples = []  # (seconds, trials done, RSS MiB)

    def sample(pid: int) -> None:
        try:
            done = len(json.loads(state.read_text())["done"]) if state.exists() else 0
            rss = memory_mib(pid)[0]
            if rss:  # 0 once the driver has exited
                samples.append((time.monotonic() - t0, done, rss))
        except (OSError, ValueError):  # the state file is being replaced
            pass

    log = work / "driver.log"
    proc, _ = start(cmd, log)
    wait(proc, log, poll=sample, every=1.0)
    wall = time.monotonic() - t0

    print(f"\n{args.trials} trials ({EPOCHS} epochs of 2 steps), {args.concurrency} at once: {wall:.0f} s")
    marks = sorted({round(args.trials * f) for f in (0.1, 0.25, 0.5, 0.75, 1.0)})
    rows = {next(s for s in samples if s[1] >= m) for m in marks if any(s[1] >= m for s in samples)}
    print(
        table(
            ("trials done", "elapsed s", "driver RSS MiB"),
            [(done, f"{seconds:.0f}", f"{rss:.1f}") for seconds, done, rss in sorted(rows)],
        )
    )
    early = next(s for s in samples if s[1] >= args.trials // 10)
    late = samples[-1]
    per_100 = (late[2] - early[2]) / max(late[1] - early[1], 1) * 100
    peak = max(s[2] for s in samples)
    print(f"peak RSS {peak:.1f} MiB; growth after the first 10%: {per_100:+.1f} MiB per 100 trials")

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tune-codec")
    runs = client.search_runs([exp.experiment_id], max_results=50_000)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    ids = [r.data.tags["trial_id"] for r in children]
    once = all(
        sorted(m.step for m in client.get_metric_history(r.info.run_id, "val/snr_db"))
        == list(range(1, EPOCHS + 1))
        for r in children
    )
    finished = sum(r.info.status == "FINISHED" for r in children)
    print(
        f"MLflow: {len(children)} child runs for {args.trials} trials, {len(set(ids))} distinct, "
        f"{finished} FINISHED, every epoch logged once: {once}"
    )
    ok = len(children) == len(set(ids)) == args.trials == finished and once
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
