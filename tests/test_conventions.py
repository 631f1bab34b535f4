"""What users of MLflow and Ray already have configured: MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME,
RAY_ADDRESS and `ray job submit`; datasets made of symlinked folders; flags in either spelling; space
defaults that never fail a space."""

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import train_codec
from tune_codec import run
from tune_codec.data.corpus import find_audio, load_corpus
from tune_codec.errors import SpaceError
from tune_codec.evaluation import codes as codec
from tune_codec.report import report
from tune_codec.search import driver as search
from tune_codec.search.space import parse_space
from tune_codec.tracking import resolve_tracking_uri

from .conftest import ENV, SMOKE, free_port, runs_of, space_file, wait_for, write_speechlike
from .test_cli import tiny_flags


def test_the_tracking_uri_is_the_flag_then_the_environment_then_mlflow_db(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'env.db'}"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_every_command_honours_mlflow_environment_variables(
    ray_local, audio_dir, tmp_path, monkeypatch, capsys
):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    store = tmp_path / "store" / "env.db"
    store.parent.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    data = ["--cache-dir", str(tmp_path / "cache"), "--data-dir", str(audio_dir)]

    assert train_codec.main([*data, "--checkpoint_dir", str(tmp_path / "ckpt"), *tiny_flags()]) == 0
    argv = ["--space", str(SMOKE), "--trials", "2", "--storage-path", str(tmp_path / "ray_results"), *data]
    assert run.main(argv) == 0
    assert report.main(["smoke", "--out", str(tmp_path / "report")]) == 0
    client = MlflowClient(f"sqlite:///{store}")
    (parent,), children = runs_of(client, "from-env")
    assert len(children) == 2 and parent.info.run_name == "smoke"
    single = [r for r in client.search_runs([parent.info.experiment_id]) if r.info.run_name == "ckpt"]
    assert len(single) == 1 and single[0].info.status == "FINISHED"
    best = max(children, key=lambda c: c.data.metrics["val/best_snr_db"])
    out = tmp_path / "x.codes"
    checkpoint = f"runs:/{best.info.run_id}/checkpoint/best.pt"
    assert codec.main(["encode", checkpoint, str(audio_dir / "c0.ogg"), str(out)]) == 0
    assert out.stat().st_size > 0
    assert not (work / "mlflow.db").exists()  # nothing went silently to a local store
    assert f"at sqlite:///{store}" in capsys.readouterr().out

    # a flag beats the environment
    ckpt = tmp_path / "ckpt2"
    assert (
        train_codec.main([*data, "--checkpoint_dir", str(ckpt), "--experiment_name", "flag", *tiny_flags()])
        == 0
    )
    assert len(client.search_runs([client.get_experiment_by_name("flag").experiment_id])) == 1


def test_flags_are_accepted_in_either_spelling(tmp_path):
    train = train_codec.parse_args(["--data-dir", "d", "--checkpoint-dir", "c", "--learning-rate", "0.01"])
    assert (train.data_dir, train.checkpoint_dir, train.learning_rate) == (Path("d"), Path("c"), "0.01")
    driver = search.parse_args(
        ["--space", "s.yaml", "--data_dir", "d", "--storage_path=r", "--gpus_per_trial", "1"]
    )
    assert (driver.data_dir, driver.storage_path, driver.gpus_per_trial) == (Path("d"), Path("r"), 1.0)
    assert (
        codec.parse_args(["encode", "best.pt", "a.wav", "a.codes", "--tracking_uri", "u"]).tracking_uri == "u"
    )
    assert report.parse_args(["s", "--experiment_name", "e"]).experiment_name == "e"


def test_help_lists_both_spellings_of_each_flag(capsys):
    with pytest.raises(SystemExit):
        train_codec.parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--data_dir DATA_DIR, --data-dir DATA_DIR" in out
    assert "--learning_rate FLOAT, --learning-rate FLOAT" in out


def test_symlinked_folders_are_followed_and_loops_read_once(tmp_path, caplog):
    real = tmp_path / "real"
    for speaker in ("a", "b"):
        for i in range(2):
            write_speechlike(real / speaker / f"{i}.wav", 0.5, 8000, seed=i)
    root = tmp_path / "dataset"
    root.mkdir()
    (root / "speaker_a").symlink_to(real / "a", target_is_directory=True)
    (root / "speaker_b").symlink_to(real / "b", target_is_directory=True)
    (root / "speaker_a" / "up").symlink_to(root, target_is_directory=True)  # a loop
    (root / "zz_copy").symlink_to(real / "b", target_is_directory=True)  # a second way to the same folder

    with caplog.at_level(logging.WARNING, logger="tune_codec.data"):
        found = find_audio(root)
    assert [str(p.relative_to(root)) for p in found] == [
        "speaker_a/0.wav",
        "speaker_a/1.wav",
        "speaker_b/0.wav",
        "speaker_b/1.wav",
    ]
    assert "already read" in caplog.text and "zz_copy" in caplog.text and "up" in caplog.text
    corpus = load_corpus(root, 8000, tmp_path / "cache")
    assert sorted(corpus.names) == [
        "speaker_a/0.wav",
        "speaker_a/1.wav",
        "speaker_b/0.wav",
        "speaker_b/1.wav",
    ]


def test_a_default_never_fails_a_space_but_a_written_value_does():
    assert (
        parse_space({"config": {"num_epochs": 1}, "search": {"rms_weight": {"uniform": [1, 20]}}}).asha
        is None
    )
    four = parse_space({"config": {"num_epochs": 4}, "search": {"rms_weight": {"uniform": [1, 20]}}})
    assert four.asha == {"grace_period": 3, "reduction_factor": 2}
    with pytest.raises(SpaceError, match="grace_period: 3 must be an int from 1 to num_epochs"):
        parse_space(
            {
                "config": {"num_epochs": 1},
                "asha": {"grace_period": 3},
                "search": {"rms_weight": {"uniform": [1, 2]}},
            }
        )


RAY = [sys.executable, "-m", "ray.scripts.scripts"]  # the `ray` command of this environment


def free_ports(n: int) -> list[int]:
    return [free_port() for _ in range(n)]


def node_ports() -> list[str]:
    """Free ports for the agents and metrics of one Ray node (their defaults are fixed, so two clash)."""
    flags = ("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port")
    flags += ("--runtime-env-agent-port",)
    return [arg for flag, port in zip(flags, free_ports(4), strict=True) for arg in (flag, str(port))]


@pytest.fixture(scope="module")
def ray_cluster():
    """A real two-node cluster started with `ray start`: a head, and a worker node in its own session that
    `kill_worker` SIGKILLs, each with 1 CPU and 1 GPU (a logical one: torch finds no CUDA and trains on
    the CPU), on their own ports and temp dir. One for the module (its setup is about 13 s): the test
    that kills the worker is the module's last (pytest runs a module's tests in file order), and each
    test before it checks that both nodes are there."""
    venv_bin = str(Path(sys.executable).parent)
    env = {**ENV, "PATH": f"{venv_bin}{os.pathsep}{ENV.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    # Ray's token authentication, on as `ray start` turns it on where a token exists; the cluster and
    # its clients in token mode (a client given an address does not send the token by itself)
    subprocess.run([*RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    env["RAY_AUTH_MODE"] = "token"
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    gcs, dashboard = free_ports(2)
    node = ["--num-cpus", "1", "--num-gpus", "1", "--object-store-memory", str(100 * 2**20)]
    node.append("--disable-usage-stats")
    subprocess.run(
        [
            *RAY, "start", "--head", "--port", str(gcs), *node, "--temp-dir", temp,
            "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(dashboard), *node_ports(),
        ],
        env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    worker = None  # a setup that fails stops the head too
    try:
        worker = subprocess.Popen(
            [
                *RAY, "start", "--address", f"127.0.0.1:{gcs}", *node, "--block", *node_ports(),
            ],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        both = f"import ray, time; ray.init(address='127.0.0.1:{gcs}')\n"
        both += "while sum(n['Alive'] for n in ray.nodes()) < 2: time.sleep(0.5)"
        # on a loaded machine a node takes minutes to register (seen with two searches beside the tests)
        subprocess.run([sys.executable, "-c", both], env=env, check=True, capture_output=True, timeout=300)

        def kill_worker():
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()

        yield {
            "address": f"127.0.0.1:{gcs}",
            "dashboard": f"http://127.0.0.1:{dashboard}",
            "env": env,
            "kill_worker": kill_worker,
        }
    finally:  # `ray stop` would stop every Ray on the machine, the tests' own among them
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if temp.encode() in cmdline.read_bytes():
                    os.kill(int(cmdline.parent.name), signal.SIGKILL)
            except OSError:  # gone already
                pass


def test_ray_address_and_ray_job_submit_join_a_cluster_started_with_ray_start(
    ray_cluster, search_env, tmp_path
):
    flags, client = search_env
    argv = ["-m", "tune_codec.run", "--space", str(SMOKE), "--trials", "1", *flags]  # joining is the point
    env = {**ray_cluster["env"], "RAY_ADDRESS": ray_cluster["address"]}
    done = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"ray: joined {ray_cluster['address']}: 2 nodes, 2 CPUs, 2 GPUs" in done.stdout
    assert "placement: 2 trials at once, each 1 CPU and 1 GPU (of 2 CPUs and 2 GPUs" in done.stdout

    job = subprocess.run(
        [*RAY, "job", "submit", "--address", ray_cluster["dashboard"], "--",
         "python", *argv, "--name", "submitted"],
        env=ray_cluster["env"], capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-2000:]
    assert "ray: joined" in job.stdout and "succeeded" in job.stdout
    searches = {p.info.run_name: p for p in runs_of(client)[0]}
    assert set(searches) == {"smoke", "submitted"}
    assert all(p.info.status == "FINISHED" for p in searches.values())
    assert len(runs_of(client)[1]) == 2


def test_every_node_must_see_the_data_cache_and_the_storage_path(ray_cluster, tmp_path):
    (tmp_path / "cache.i16").write_bytes(b"")
    code = "import sys, ray; from pathlib import Path; from tune_codec.search.cluster import check_nodes\n"
    code += f"ray.init(address={ray_cluster['address']!r})\n"
    code += "check_nodes(Path(sys.argv[1]), Path(sys.argv[2]))\n"
    code += "print(sum(n['Alive'] for n in ray.nodes()), 'nodes seen')"
    seen = [sys.executable, "-c", code, str(tmp_path / "cache.i16"), str(tmp_path / "ray_results")]
    done = subprocess.run(seen, env=ray_cluster["env"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "2 nodes seen" in done.stdout, done.stderr[-2000:]
    missing = subprocess.run(
        seen[:3] + ["/nonexistent/cache.i16", seen[4]], env=ray_cluster["env"], capture_output=True, text=True
    )
    assert "does not see /nonexistent/cache.i16: on a cluster --cache-dir" in missing.stderr
    assert not list(tmp_path.glob(".tune-codec-probe-*"))  # the probe is removed either way


def test_a_search_on_two_nodes_survives_losing_one(ray_cluster, search_env, tmp_path):
    """Joined with --address (RAY_ADDRESS and `ray job submit` are the test above), both nodes train a
    trial; the worker node is SIGKILLed once both have saved a checkpoint, and its trial is retried from
    that checkpoint on the head."""
    flags, client = search_env
    space = space_file(tmp_path, "nodes", trials=3, config={"num_epochs": 8, "max_steps_per_epoch": 30})
    log = (tmp_path / "search.log").open("w")
    argv = ["-m", "tune_codec.run", "--space", str(space), *flags, "--address", ray_cluster["address"]]
    search = subprocess.Popen(
        [sys.executable, *argv], env=ray_cluster["env"], stdout=log, stderr=subprocess.STDOUT, text=True
    )
    trials = tmp_path / "ray_results" / "nodes"
    saved = lambda: len({p.parent for p in trials.glob("*/checkpoint_*")}) >= 2  # noqa: E731
    wait_for(saved, 300, "a checkpoint from each node")
    ray_cluster["kill_worker"]()
    assert search.wait(timeout=600) == 0, (tmp_path / "search.log").read_text()[-3000:]
    out = (tmp_path / "search.log").read_text()
    assert "ray: joined" in out and ": 2 nodes, 2 CPUs, 2 GPUs" in out
    (parent,), children = runs_of(client)
    assert parent.info.status == "FINISHED" and len(children) == 3
    assert all(c.info.status == "FINISHED" for c in children)
    retried = [c for c in children if int(c.data.tags.get("retries", 0)) >= 1]
    assert len(retried) == 1, [c.data.tags for c in children]
    steps = [m.step for m in client.get_metric_history(retried[0].info.run_id, "val/snr_db")]
    assert sorted(steps) == list(range(1, 9))  # each epoch once: it went on from its checkpoint
