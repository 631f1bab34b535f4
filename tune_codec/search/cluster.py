"""Where trials run: start Ray here or join a cluster, place the trials on its CPUs and GPUs, and check
that every node sees the data cache and the storage path."""

from __future__ import annotations

import logging
import math
import os
import socket
from pathlib import Path

import ray
from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tune_codec.errors import UsageError
from tune_codec.files import nearest_existing
from tune_codec.tracking import one_line

RAY_TOKEN_DOCS = "https://docs.ray.io/en/latest/ray-security/token-auth.html"


def start_ray(
    args, concurrency: int, shared: tuple[Path, ...] = (), verbose: bool = False
) -> tuple[bool, float]:
    """Connect to --address, or start Ray here unless it already runs in this process. Then place the
    trials, and on a cluster check that every node sees the `shared` paths (check_nodes). Ray's own INFO
    lines (starting, connecting) only when verbose. Whether Ray was started here, and the GPUs per trial."""
    started = not ray.is_initialized()
    level = logging.INFO if verbose else logging.WARNING
    if started and args.address:  # a cluster's own settings (CPUs, object store) are its own
        join(args.address, level)
    elif started:  # light settings for a laptop
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # Ray's notice that token authentication is on, for the Ray this process starts and alone uses
        logging.getLogger(maybe_enable_token_auth_if_token_available.__module__).setLevel(
            level if verbose else logging.ERROR
        )
        ray.init(
            address="local",  # a new Ray here, even where `ray start` runs (--address auto joins that)
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            object_store_memory=200 * 2**20,
            log_to_driver=False,
            logging_level=level,
        )
    try:
        gpus = place(args, concurrency)
        if args.address and shared:
            check_nodes(*shared)
    except UsageError:
        if started:
            ray.shutdown()
        raise
    return started, gpus


def ray_token() -> str | None:
    """Where Ray would find an authentication token here, in its order: $RAY_AUTH_TOKEN, the file named
    by $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token (which the first local ray.init() writes); None if nowhere."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "$RAY_AUTH_TOKEN"
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    return str(path) if path.is_file() else None


def join(address: str, level: int) -> None:
    """ray.init() at an existing cluster. Ray 2.60 turns token authentication on for a `ray start` made
    where a token exists, as it does after the first local ray.init(), but a driver given an explicit
    address (RAY_ADDRESS, --address) does not send the token: only address="auto" does. So with
    RAY_AUTH_MODE unset and a token here, it is sent, as Ray does for "auto" (a cluster without
    authentication accepts it too). A cluster that cannot be joined is a UsageError naming the likely
    cause and the fix."""
    # Ray's own step for "auto" (RAY_AUTH_MODE unset and a token here: token mode for this process), which
    # also refreshes the settings Ray read at import; setting the variable alone would come too late
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    token = ray_token()
    try:
        ray.init(address=address, log_to_driver=False, logging_level=level)
    except ConnectionError as e:
        raise UsageError(cannot_join(address, token, one_line(e))) from None


def cannot_join(address: str, token: str | None, error: str) -> str:
    """Why a cluster could not be joined and what to do: nothing listens at the address, or (something
    does) Ray's token authentication refused this machine."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=3).close()
    except (OSError, ValueError):
        return (
            f"cannot join the Ray cluster at {address} ({error}): nothing answers there; start one with "
            f"`ray start --head --port {port or 6379}` or fix --address / $RAY_ADDRESS"
        )
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode == "disabled":
        cause = "RAY_AUTH_MODE=disabled is set here, so no token was sent"
        fix = "unset RAY_AUTH_MODE (or set it to token) with the head's token at ~/.ray/auth_token"
    elif token:
        cause = f"it refused this machine's authentication token ({token})"
        fix = (
            "give this machine the head's token: copy the head's ~/.ray/auth_token here or set RAY_AUTH_TOKEN"
        )
    else:
        cause = "this machine has no authentication token (~/.ray/auth_token, $RAY_AUTH_TOKEN)"
        fix = "copy the head's ~/.ray/auth_token here or set RAY_AUTH_TOKEN"
    return (
        f"cannot join the Ray cluster at {address} ({error}): it answers, so most likely Ray's token "
        f"authentication, which Ray 2.60 turns on for a `ray start` on a machine that has a token: {cause}. "
        f"Fix: {fix} (`ray get-auth-token` on the head prints it), or start the head with "
        f"RAY_AUTH_MODE=disabled to turn authentication off; see {RAY_TOKEN_DOCS}"
    )


def place(args, concurrency: int) -> float:
    """The GPUs per trial: --gpus-per-trial, or where not given the cluster's shared (share_gpus). Checks
    that the cluster has what a trial asks for, and prints where trials run."""
    have = ray.cluster_resources()
    if args.address:
        nodes = sum(node["Alive"] for node in ray.nodes())
        cpus, gpus = have.get("CPU", 0), have.get("GPU", 0)
        print(f"ray: joined {args.address}: {nodes} nodes, {cpus:g} CPUs, {gpus:g} GPUs")
    gpus = args.gpus_per_trial
    if gpus is None:
        gpus = share_gpus(have.get("GPU", 0), concurrency)
    for name, want in (("CPU", args.cpus_per_trial), ("GPU", gpus)):
        if want > have.get(name, 0):
            raise UsageError(
                f"--{name.lower()}s-per-trial {want:g}: the Ray cluster has {have.get(name, 0):g} {name}s "
                "(a trial asking for more would wait forever)"
            )
    devices = f"{gpus:g} GPU" if gpus else "no GPU"
    print(
        f"placement: {concurrency} trials at once, each {args.cpus_per_trial:g} CPU and {devices} "
        f"(of {have.get('CPU', 0):g} CPUs and {have.get('GPU', 0):g} GPUs; --gpus-per-trial sets it)"
    )
    return gpus


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
