"""Where trials run: start Ray here or join a cluster, place the trials on its CPUs and GPUs, and check
that every node sees the data cache and the storage path."""

from __future__ import annotations

import math
import os
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tune_codec.config import UsageError
from tune_codec.files import nearest_existing


def start_ray(args, concurrency: int, shared: tuple[Path, ...] = ()) -> bool:
    """Connect to --address, or start Ray here unless it already runs in this process; True if started.
    Then place the trials, and on a cluster check that every node sees the `shared` paths (check_nodes)."""
    started = not ray.is_initialized()
    if started and args.address:  # a cluster's own settings (CPUs, object store) are its own
        ray.init(address=args.address, log_to_driver=False)
    elif started:  # light settings for a laptop
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(
            address="local",  # a new Ray here, even where `ray start` runs (--address auto joins that)
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            object_store_memory=200 * 2**20,
            log_to_driver=False,
        )
    try:
        place(args, concurrency)
        if args.address and shared:
            check_nodes(*shared)
    except UsageError:
        if started:
            ray.shutdown()
        raise
    return started


def place(args, concurrency: int) -> None:
    """Sets --gpus-per-trial where it was not given (share_gpus), checks that the cluster has what a trial
    asks for, and prints where trials run."""
    have = ray.cluster_resources()
    if args.address:
        nodes = sum(node["Alive"] for node in ray.nodes())
        cpus, gpus = have.get("CPU", 0), have.get("GPU", 0)
        print(f"ray: joined {args.address}: {nodes} nodes, {cpus:g} CPUs, {gpus:g} GPUs")
    if args.gpus_per_trial is None:
        args.gpus_per_trial = share_gpus(have.get("GPU", 0), concurrency)
    for name, want in (("CPU", args.cpus_per_trial), ("GPU", args.gpus_per_trial)):
        if want > have.get(name, 0):
            raise UsageError(
                f"--{name.lower()}s-per-trial {want:g}: the Ray cluster has {have.get(name, 0):g} {name}s "
                "(a trial asking for more would wait forever)"
            )
    devices = f"{args.gpus_per_trial:g} GPU" if args.gpus_per_trial else "no GPU"
    print(
        f"placement: {concurrency} trials at once, each {args.cpus_per_trial:g} CPU and {devices} "
        f"(of {have.get('CPU', 0):g} CPUs and {have.get('GPU', 0):g} GPUs; --gpus-per-trial sets it)"
    )


def check_nodes(cache: Path, storage: Path) -> None:
    """On a cluster, every node must see the data cache and the storage path at the same paths (storage
    every node mounts): a trial placed on a node that does not would fail there, after the search began."""
    # a file only the same storage shows on every node
    probe = nearest_existing(storage) / f".tune-codec-probe-{os.getpid()}"
    probe.touch()
    try:
        nodes = [node for node in ray.nodes() if node["Alive"]]
        seen = [
            missing.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote([str(cache), str(probe)])
            for node in nodes
        ]
        for node, gone in zip(nodes, ray.get(seen, timeout=300), strict=True):
            if gone:
                raise UsageError(
                    f"node {node['NodeManagerAddress']} does not see {' or '.join(gone)}: on a cluster "
                    "--cache-dir and --storage-path must be on storage every node mounts at the same path"
                )
    finally:
        probe.unlink()


@ray.remote(num_cpus=0)
def missing(paths: list[str]) -> list[str]:
    return [p for p in paths if not os.path.exists(p)]


def share_gpus(gpus: float, concurrency: int) -> float:
    """A GPU each while there are enough; else the trials that run at once packed evenly onto them, as
    fractions Ray can place (1/2, 1/3, ...); 0 without GPUs."""
    return 1 / math.ceil(concurrency / gpus) if gpus else 0.0
