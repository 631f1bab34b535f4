"""Ray 2.60's token authentication as users have it (RAY_AUTH_MODE unset): a plain `ray start` on a machine
with a token, then a search with RAY_ADDRESS, typed as a user types them. Run in a HOME of its own, so the
token is this test's and the machine's ~/.ray is left alone."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from .conftest import free_port, space_file
from .test_conventions import node_ports

RAY = [sys.executable, "-m", "ray.scripts.scripts"]  # the `ray` command of this environment


def user_env(home: Path) -> dict:
    """The environment of a user who never heard of RAY_AUTH_MODE, with `home` as their home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    venv_bin = str(Path(sys.executable).parent)
    return {**env, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", "PATH": f"{venv_bin}:{env['PATH']}"}


def kill_processes_of(home: Path) -> None:
    """Every process started with this HOME: the cluster's, agents included (`ray stop` would stop every
    Ray on the machine)."""
    marker = f"HOME={home}\0".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes():
                os.kill(int(environ.parent.name), signal.SIGKILL)
        except OSError:  # gone already, or not ours to read
            pass


@pytest.mark.slow  # a Ray cluster and three searches
def test_a_plain_ray_start_with_a_token_is_joined_and_a_wrong_token_is_named(search_env, tmp_path):
    flags, client = search_env
    home = tmp_path / "home"
    home.mkdir()
    env, port = user_env(home), free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    # the token a first local ray.init() writes (the quick start's search does)
    subprocess.run([*RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    assert (home / ".ray" / "auth_token").stat().st_size > 0
    try:
        started = subprocess.run(
            [*RAY, "start", "--head", "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
             # apart from other Rays on this machine: its own temp dir and agent ports
             "--temp-dir", temp, *node_ports()],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr[-3000:]
        assert "Token authentication is enabled" in started.stderr  # Ray's default with a token, as users get

        space = space_file(tmp_path, "one", trials=1, config={"num_epochs": 1})
        search = [sys.executable, "-m", "tune_codec.run", "--space", str(space), *flags]
        joined = subprocess.run(
            search,
            env={**env, "RAY_ADDRESS": f"127.0.0.1:{port}"},
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert joined.returncode == 0, joined.stderr[-3000:]
        assert f"ray: joined 127.0.0.1:{port}: 1 nodes, 2 CPUs" in joined.stdout
        assert "trial" in joined.stdout and "completed its 1 epochs" in joined.stdout

        wrong = {**env, "RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_AUTH_TOKEN": "not-the-cluster-token" * 3}
        refused = subprocess.run(
            [*search, "--name", "wrong"], env=wrong, capture_output=True, text=True, timeout=400
        )
        assert refused.returncode == 2
        error = refused.stderr.strip().splitlines()[-1]
        assert error.startswith(f"tune_codec.run: error: cannot join the Ray cluster at 127.0.0.1:{port}")
        assert "refused this machine's authentication token ($RAY_AUTH_TOKEN)" in error  # the cause
        assert "copy the head's ~/.ray/auth_token here or set RAY_AUTH_TOKEN" in error  # the fix

        # no RAY_ADDRESS: a Ray of the search's own, and a new MLflow database; their notices are not the
        # console's (Ray's that token authentication is on, MLflow's that it creates its tables)
        own = [*search, "--name", "own", "--tracking-uri", str(tmp_path / "own.db")]
        alone = subprocess.run(own, env=env, capture_output=True, text=True, timeout=400)
        assert alone.returncode == 0, alone.stderr[-3000:]
        assert "completed its 1 epochs" in alone.stdout and (tmp_path / "own.db").exists()
        assert "Token authentication" not in alone.stderr and "database tables" not in alone.stderr
    finally:
        kill_processes_of(home)
        shutil.rmtree(temp, ignore_errors=True)
