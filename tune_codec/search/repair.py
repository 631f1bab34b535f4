"""Before Tune restores a search whose driver was killed: point each trial at a checkpoint that exists.

Tune deletes a trial's previous checkpoint as soon as it registers the next one (num_to_keep=1), but
its experiment state reaches the storage path only when a later, asynchronous sync finishes. A driver
killed in between (SIGKILL, out of memory, a lost head node) leaves a state that names a deleted
checkpoint, and Tune fails the trial at every retry ("does not exist on storage anymore"), throwing
away its training. The trial's newest checkpoint is still on disk: the state is pointed at it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ray import tune
from ray.tune.experiment.trial import _TrainingRunMetadata

from tune_codec.tracking import write_state


def repair_checkpoints(folder: Path) -> list[str]:
    """Rewrite the newest experiment state in folder so that no trial names a missing checkpoint;
    returns the trials repointed, each as 'trial dir: old -> new'."""
    states = sorted(folder.glob("experiment_state-*.json"))  # Tune restores the newest
    if not states:
        return []
    try:
        state = json.loads(states[-1].read_text())
    except (OSError, ValueError):  # half-written (a full disk): Tune's restore says what it makes of it
        return []
    repaired = []
    for entry in state["trial_data"]:  # [trial json, run metadata json]
        metadata = _TrainingRunMetadata.from_json_state(entry[1])
        result = metadata.checkpoint_manager.latest_checkpoint_result
        if result is None or Path(result.checkpoint.path).exists():
            continue
        lost = Path(result.checkpoint.path)
        survivors = sorted(lost.parent.glob("checkpoint_*"))
        if not survivors:  # nothing to continue from: Tune's own retry rules apply
            continue
        result.checkpoint = tune.Checkpoint.from_directory(str(survivors[-1]))
        entry[1] = metadata.get_json_state()
        repaired.append(f"{lost.parent.name}: {lost.name} -> {survivors[-1].name}")
    if repaired:
        write_state(states[-1], state)
    return repaired
