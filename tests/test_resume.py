"""A resume after a kill that fell between Tune deleting a trial's previous checkpoint and its experiment
state reaching storage: the state is pointed at the checkpoint that survived."""

import shutil

from ray.tune.experiment.trial import _TrainingRunMetadata

from tune_codec import tracking
from tune_codec.search.repair import repair_checkpoints


def named_checkpoints(folder):
    state = tracking.read_state(max(folder.glob("experiment_state-*.json")))
    return [
        _TrainingRunMetadata.from_json_state(meta).checkpoint_manager.latest_checkpoint_result.checkpoint.path
        for _, meta in state["trial_data"]
    ]


def test_a_state_naming_a_deleted_checkpoint_is_pointed_at_the_surviving_one(smoke_search, tmp_path):
    folder = smoke_search.root / "ray_results" / "smoke"
    named = named_checkpoints(folder)
    assert repair_checkpoints(folder) == []  # a search that ended cleanly needs nothing

    backup = tmp_path / "state"
    shutil.copytree(folder, backup, symlinks=True)
    try:
        lost = tmp_path.joinpath(named[0])  # absolute: tmp_path is ignored
        newer = lost.with_name("checkpoint_000099")  # as if Tune had registered a newer one, then died
        lost.rename(newer)
        (line,) = repair_checkpoints(folder)
        assert line == f"{lost.parent.name}: {lost.name} -> {newer.name}"
        assert named_checkpoints(folder) == [str(newer), *named[1:]]
        assert repair_checkpoints(folder) == []
    finally:  # the shared search stays as it was for the other tests
        shutil.rmtree(folder)
        shutil.copytree(backup, folder, symlinks=True)
