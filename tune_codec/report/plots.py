"""The report's own figures (Optuna draws the history and the parallel coordinates)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from tune_codec.names import label  # noqa: E402


def plot_best_vs_fields(path: Path, trials: list, space: dict, metric: str) -> None:
    """Each trial's best (TrialRow) against each searched field."""
    fig, axes = plt.subplots(1, len(space), figsize=(4 * len(space), 3.4), squeeze=False, sharey=True)
    for ax, (name, dist) in zip(axes[0], space.items(), strict=True):
        categorical = isinstance(dist, optuna.distributions.CategoricalDistribution)
        choices = sorted(dist.choices, key=str) if categorical else []
        if categorical and all(isinstance(c, int | float) for c in choices):
            choices = sorted(choices)
        for useful, style in (
            (True, dict(c="tab:blue", label="useful")),
            (False, dict(c="tab:red", marker="x", label="collapsed or failed")),
        ):
            shown = [t for t in trials if t.useful == useful and math.isfinite(t.best)]
            xs = [choices.index(t.params[name]) if categorical else t.params[name] for t in shown]
            ax.scatter(xs, [t.best for t in shown], **style)
        if categorical:  # in the choices' order, not the order the trials came in
            ax.set_xticks(range(len(choices)), [str(c) for c in choices])
        elif getattr(dist, "log", False):
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())  # 2x10^0, 3x10^0 ... overlap
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"best validation {label(metric)}")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_importances(path: Path, importances: dict[str, float]) -> None:
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(importances)))
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance for search/score")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def save_axes(path: Path, ax) -> None:
    """Save the figure of an Optuna plot."""
    fig = ax.figure
    fig.set_size_inches(9, 4.5)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_pareto(
    path: Path, points: list[tuple[float, float, bool]], front: list[tuple[float, float]], metric: str
):
    """Each trial's best validation metric against its bitrate (points: kbps, metric, useful), the Pareto
    front as a step line."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for useful, style in ((True, dict(c="tab:blue", label="useful")), (False, dict(c="tab:red", marker="x"))):
        shown = [(k, v) for k, v, u in points if u == useful and math.isfinite(v)]
        if shown:
            ax.scatter(
                *zip(*shown, strict=True), **style, **({} if useful else {"label": "collapsed or failed"})
            )
    if front:
        ax.step(*zip(*front, strict=True), where="post", c="tab:orange", label="Pareto front")
    ax.set_xlabel("bitrate (kbps)")
    ax.set_ylabel(f"best validation {label(metric)}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_schedule(path: Path, schedule: list[tuple[int, dict]], num_epochs: int) -> None:
    """The loss weights and the learning rate against the epoch, from a schedule's change points."""
    names = sorted({name for _, fields in schedule for name in fields})
    fig, axes = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    values: dict[str, float] = {}
    series: dict[str, list[float]] = {n: [] for n in names}
    changes = dict(schedule)
    for epoch in range(1, num_epochs + 1):
        values.update(changes.get(epoch, {}))
        for name in names:
            series[name].append(values.get(name, math.nan))
    epochs = range(1, num_epochs + 1)
    for name in names:
        ax = axes[1] if name == "learning_rate" else axes[0]
        ax.step(epochs, series[name], where="post", label=name)
    axes[0].set_ylabel("loss weight")
    axes[1].set_ylabel("learning rate")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
