"""Population Based Training for a space with `scheduler: pbt` or `pb2`: the loss weights and learning
rate of a population of trials change during training, each perturbation copying the checkpoint of a
better trial (Ray Tune's PopulationBasedTraining and PB2)."""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler
from ray.tune.schedulers.pb2 import PB2
from ray.tune.search import BasicVariantGenerator

from tune_codec.search.space import Space, to_tune


class Clamp:
    """PBT's custom_explore_fn: a perturbed value (x 0.8 or x 1.2) is kept inside its searched range."""

    def __init__(self, bounds: dict[str, tuple[float, float]]):
        self.bounds = bounds

    def __call__(self, config: dict) -> dict:
        for name, (low, high) in self.bounds.items():
            config[name] = min(max(config[name], low), high)
        return config


class Population:
    """What PBT and PB2 do here beyond Ray's: at most `concurrency` trials train at once (the others wait,
    paused at a perturbation, until a slot frees; PBT then runs the trial furthest behind), and a trial's
    last epoch is not perturbed, since nothing is left to train with the new weights."""

    concurrency, num_epochs = 1, 1

    def choose_trial_to_run(self, tune_controller):
        running = sum(t.status == Trial.RUNNING for t in tune_controller.get_trials())
        return super().choose_trial_to_run(tune_controller) if running < self.concurrency else None

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get("epoch", 0) >= self.num_epochs:
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def _exploit(self, tune_controller, trial: Trial, trial_to_clone: Trial) -> None:
        """Ray's copy, except that the trial keeps the epoch of this perturbation as its last one. Ray
        hands over the copied trial's instead: a trial that copies one paused behind it goes back to that
        epoch and is due again one epoch later, so two running trials can copy a paused one for ever
        (seen: 87 results of the same epoch). Kept, the next perturbation waits until the copy trains
        past this epoch, and every trial reaches its last epoch."""
        now = self._trial_state[trial].last_perturbation_time  # on_trial_result set it to this epoch
        super()._exploit(tune_controller, trial, trial_to_clone)
        self._trial_state[trial].last_perturbation_time = now


class PopulationPBT(Population, PopulationBasedTraining):
    pass


class PopulationPB2(Population, PB2):
    pass


def population_scheduler(space: Space) -> PopulationBasedTraining:
    """The space's PBT or PB2, perturbing its searched fields every perturbation_interval epochs."""
    settings = dict(space.pbt)
    ranges = {n: a for n, (kind, a) in space.search.items() if kind in ("loguniform", "uniform")}
    if space.scheduler == "pb2":
        settings.pop("resample_probability")
        scheduler = PopulationPB2(
            time_attr="epoch", hyperparam_bounds={n: list(a) for n, a in ranges.items()}, **settings
        )
    else:
        # a list is perturbed to a neighbouring choice; a distribution is scaled, or drawn again
        mutations = {
            n: list(a) if kind == "categorical" else to_tune(kind, a)
            for n, (kind, a) in space.search.items()
            if kind != "fixed"
        }
        scheduler = PopulationPBT(
            time_attr="epoch", hyperparam_mutations=mutations, custom_explore_fn=Clamp(ranges), **settings
        )
    scheduler.concurrency, scheduler.num_epochs = space.concurrency, space.base.num_epochs
    return scheduler


def population(space: Space, seed: int) -> BasicVariantGenerator:
    """The first population: the space's start points, then random draws from its distributions."""
    return BasicVariantGenerator(points_to_evaluate=list(space.start) or None, random_state=seed)
