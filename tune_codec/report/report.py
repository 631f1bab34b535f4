"""A finished search, explained: python -m tune_codec.report SEARCH [--out DIR] [--price-per-gpu-hour P]

SEARCH is a search's name (its MLflow parent run: `--name` of tune_codec.run, by default the space file's
name) or its Ray experiment folder (ray_results/NAME). Everything is read from MLflow: the parent run's
params (the space, the price, the budget) and each child run's params, metric histories and stop_reason.
Written to --out (default reports/NAME): report.html (self-contained), report.txt and the figures as PNG;
the folder is also logged to the parent run under report/.
"""

from __future__ import annotations

import argparse
import html
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import optuna.visualization.matplotlib as optuna_plots
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from tune_codec.cli import cell, flag, format_table
from tune_codec.doctor.rules import diagnose, headline
from tune_codec.doctor.series import read_run
from tune_codec.errors import UsageError
from tune_codec.names import BEST_METRICS, COMPLETED, METRIC_NAMES, SCORE, at_codebooks, label
from tune_codec.pages import data_uri, write_page
from tune_codec.report.plots import (
    plot_best_vs_fields,
    plot_importances,
    plot_pareto,
    plot_schedule,
    save_axes,
)
from tune_codec.search.cost import COST, Budget, check_price, describe_budget, describe_cost
from tune_codec.search.rows import AT_BEST, COPIED, TrialRow, at_best_epoch, best_column
from tune_codec.search.space import BITRATE, choice, from_params
from tune_codec.search.summary import SCHEDULE_FILE, best_text, front_table
from tune_codec.tracking import (
    DEFAULT_DB,
    EXPERIMENT_HELP,
    SEARCH,
    URI_HELP,
    experiment_name,
    read_state,
    resolve_tracking_uri,
    sqlite_file,
    state_path,
)
from tune_codec.training.schedule import describe, load_schedule

PARETO = "The best trial at each bitrate (front: on the Pareto front, no trial both better and cheaper)"
EVALUATED = "The best trial on held-out audio (python -m tune_codec.evaluate, means over the files)"
BY_CODEBOOKS = "The best trial at each bitrate it serves (quantizer dropout): validation at its best epoch"
FIGURES = {
    "history.png": "Optimisation history: what Optuna was told (search/score) per trial, and the best so far",
    "parallel.png": "Parallel coordinates of the searched fields, coloured by search/score",
    "best_vs_fields.png": "Each trial's best validation metric against each searched field",
    "importances.png": "Parameter importances (Optuna's PED-ANOVA) for search/score",
    "pareto.png": "Each trial's best validation metric against its bitrate, and the Pareto front",
    "schedule.png": "The best trial's loss weights and learning rate by epoch (its PBT schedule)",
}


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m tune_codec.report",
        description="Table, parameter importances, plots and cost of a finished search; logged to MLflow.",
    )
    p.add_argument("search", help="search name (the MLflow parent run) or Ray experiment folder")
    p.add_argument(*flag("--tracking-uri"), help=URI_HELP)
    p.add_argument(*flag("--experiment-name"), help=EXPERIMENT_HELP)
    p.add_argument(*flag("--out"), type=Path, help="output folder (default: reports/SEARCH_NAME)")
    p.add_argument(
        *flag("--price-per-gpu-hour"),
        type=float,
        help="dollars per device-hour (default: the price the search was run with, if any)",
    )
    args = p.parse_args(argv)
    args.experiment_name = experiment_name(args.experiment_name)
    return args


def find_search(args) -> tuple[MlflowClient, Run, str]:
    """The MLflow client, the search's parent run and a note on how it was chosen; UsageError if none."""
    folder = Path(args.search)
    if folder.is_dir():
        state = state_path(folder.resolve())
        if not state.exists():
            raise UsageError(f"{args.search!r} is not a search folder (no {state.name} beside it)")
        saved = read_state(state)
        client = MlflowClient(saved.get("tracking_uri") or existing_store(args.tracking_uri))
        return client, client.get_run(saved["runs"][SEARCH]), ""
    client = MlflowClient(existing_store(args.tracking_uri))
    experiment = client.get_experiment_by_name(args.experiment_name)
    if experiment is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise UsageError(f"no MLflow experiment {args.experiment_name!r} (there are: {names})")
    searches = client.search_runs(
        [experiment.experiment_id],
        "tags.`tune_codec.role` = 'search'",
        order_by=["attributes.start_time DESC"],
    )
    found = [r for r in searches if r.info.run_name == args.search]
    if not found:
        names = ", ".join(sorted({r.info.run_name for r in searches})) or "none"
        raise UsageError(
            f"no search named {args.search!r} in experiment {args.experiment_name!r} (there are: {names})"
        )
    note = (
        f"{len(found)} searches named {args.search!r}: the latest; give its folder to pick another"
        if len(found) > 1
        else ""
    )
    return client, found[0], note


def existing_store(uri: str | None) -> str:
    """The resolved tracking URI; a SQLite file that does not exist is an error, not a new empty store."""
    uri = resolve_tracking_uri(uri)
    if (db := sqlite_file(uri)) and not db.exists():
        raise UsageError(f"no MLflow store at {str(db)!r} (default: ./{DEFAULT_DB})")
    return uri


@dataclass
class Trial:
    run: Run
    row: TrialRow
    score: float | None  # what Optuna was told; None when the run never reported


def load_trials(client: MlflowClient, parent: Run, searched: list[str], metric: str) -> list[Trial]:
    """The search's child runs in the order they started."""
    children = client.search_runs(
        [parent.info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    with_bitrate = BITRATE in parent.data.params.get("objectives", "")
    trials = []
    for run in children:
        m = run.data.metrics
        history = {
            key: {h.step: h.value for h in client.get_metric_history(run.info.run_id, key)} for key in AT_BEST
        }
        best_epoch, best, at_best = at_best_epoch(history, metric, m)
        reason = run.data.tags.get("stop_reason", run.info.status.lower())
        row = TrialRow(
            trial=run.data.tags.get("trial_id", run.info.run_name),
            params={k: choice(k, run.data.params[k]) for k in searched},
            epochs=int(m.get("epoch", 0)),
            best_epoch=best_epoch,
            best=best,
            at_best=at_best,
            reason=reason,
            failed=run.info.status != "FINISHED",
            diagnosis="" if reason == COMPLETED else headline(diagnose(read_run(client, run))),
            device_hours=m.get(COST, 0.0),
            train_s=m.get("time/train_s", 0.0),
            kbps=m.get(BITRATE, math.nan) if with_bitrate else None,
        )
        score = m.get(SCORE) if run.info.status == "FINISHED" else None
        trials.append(Trial(run, row, score))
    return trials


def metric_of(parent: Run) -> str:
    """The validation metric the search maximised."""
    return parent.data.params["metric"]


def distributions(parent: Run) -> dict[str, optuna.distributions.BaseDistribution]:
    """The space the search ran, from its parent run's params."""
    try:
        return from_params(parent.data.params)
    except ValueError:  # JSON or a distribution Optuna does not know
        raise UsageError(
            f"search {parent.info.run_name!r}: its search.* params are not Optuna distributions"
        ) from None


def study_of(trials: list[Trial], space: dict) -> optuna.Study:
    """An in-memory study holding the trials that reported a score, as Optuna saw them."""
    study = optuna.create_study(direction="maximize")
    for t in trials:
        if t.score is not None and math.isfinite(t.score):
            study.add_trial(
                optuna.trial.create_trial(
                    params=t.row.params,
                    distributions=space,
                    value=t.score,
                    user_attrs={"best": t.row.best},
                )
            )
    return study


def html_table(rows: list[dict]) -> str:
    def td(v) -> str:
        text = html.escape(cell(v))
        return f'<td class="text">{text}</td>' if isinstance(v, str) else f"<td>{text}</td>"

    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "\n".join(f"<tr>{''.join(td(v) for v in row.values())}</tr>" for row in rows)
    return f"<table><tr>{head}</tr>\n{body}</table>"


def evaluation(run: Run) -> list[dict]:
    """What the evaluate command logged to a run (eval/<score>, eval/<reference>/<score>): a row per codec."""
    codecs: dict[str, dict] = {}
    for key, value in sorted(run.data.metrics.items()):
        prefix, _, name = key.rpartition("/")
        if prefix == "eval" or prefix.startswith("eval/"):
            codec = prefix.removeprefix("eval").lstrip("/") or "checkpoint"
            if codec.startswith("codebooks_"):  # the checkpoint decoded from fewer codebooks
                codec = f"checkpoint, {codec.removeprefix('codebooks_')} codebooks"
            codecs.setdefault(codec, {})[name] = value
    columns = {"kbps": "kbps", **METRIC_NAMES}  # heading -> logged name, in the evaluate command's order
    rows = [
        {"codec": codec, **{heading: scores.get(name, math.nan) for heading, name in columns.items()}}
        for codec, scores in codecs.items()
    ]
    return sorted(rows, key=lambda row: (not row["codec"].startswith("checkpoint"), row["kbps"]))


def by_codebooks(client: MlflowClient, run: Run, epoch) -> list[dict]:
    """A trial trained with quantizer dropout, decoded from 1 .. n_codebooks codebooks: its validation
    scores at `epoch` (val/codebooks_K/..., and val/... for all of them), a row per bitrate."""
    params, n = run.data.params, int(run.data.params["n_codebooks"])
    if float(params.get("quantizer_dropout", 0)) == 0 or epoch == COPIED:
        return []
    rows = []
    for k in range(1, n + 1):
        row = {"codebooks": k, "kbps": float(params["bitrate_kbps"]) * k / n}
        for metric in BEST_METRICS:
            key = metric if k == n else at_codebooks(metric, k)
            history = {h.step: h.value for h in client.get_metric_history(run.info.run_id, key)}
            row[label(metric)] = history.get(epoch, math.nan)
        rows.append(row)
    return rows


def write_report(
    client: MlflowClient, parent: Run, space: dict, trials: list[Trial], price: float | None, out: Path
) -> str:
    """Write the report's files into out; returns its text (the table and the summary lines)."""
    params = parent.data.params
    metric = metric_of(parent)
    held_out: list[dict] = []
    served: list[dict] = []
    rows = [t.row.columns(metric, price) for t in trials]
    hours = sum(t.row.device_hours for t in trials)
    useful = [t for t in trials if t.row.useful]
    lines = [
        f"search {parent.info.run_name} (MLflow run {parent.info.run_id}, space {params['space']}): "
        f"{len(trials)} of {params['trials']} trials run",
        describe_cost(hours, len(useful), len(trials), params.get("device", "device"), price),
    ]
    if "budget" in params:
        budget = Budget(params["budget"], float(params["budget_device_hours"]))
        lines.append(describe_budget(budget, hours, len(trials), int(params["trials"])))
    if useful:
        best = max(useful, key=lambda t: t.row.best)
        checkpoint = f"runs:/{best.run.info.run_id}/checkpoint/best.pt"
        also = ", ".join(
            f"{label(k).removesuffix(' dB')} {v:.2f} dB"
            for k, v in best.row.at_best.items()
            if k in ("val/snr_db", "val/si_sdr_db")
        )
        epoch = best.row.best_epoch
        lines += [
            f"best: trial {best.row.trial}, {best_text(metric, best.row.best)} "
            + (f"at epoch {epoch}" if epoch != COPIED else "in the checkpoint it copied")
            + f" ({also}); checkpoint {checkpoint}",
            f"use it: python -m tune_codec.codec encode {checkpoint} IN.wav OUT.codes "
            f"--tracking-uri {client.tracking_uri}",
        ]
        held_out = evaluation(best.run)
        served = by_codebooks(client, best.run, epoch)
        if not held_out:
            lines.append(
                f"judge it on held-out audio, with Opus beside it: python -m tune_codec.evaluate "
                f"{checkpoint} DATA_DIR --tracking-uri {client.tracking_uri}"
            )
    else:
        lines.append("no useful trial: every trial collapsed, failed or was cut short")

    study = study_of(trials, space)
    importances: dict[str, float] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if study.trials:
            save_axes(out / "history.png", optuna_plots.plot_optimization_history(study, target_name=SCORE))
        if len(study.trials) >= 2:
            importances = optuna.importance.get_param_importances(study)
            save_axes(out / "parallel.png", optuna_plots.plot_parallel_coordinate(study, target_name=SCORE))
            plot_importances(out / "importances.png", importances)
        else:
            lines.append(
                f"importances and parallel coordinates need 2 trials that reported a score; "
                f"{len(study.trials)} did"
            )
    lines += [f"optuna: {w.message}" for w in caught]
    if any(math.isfinite(t.row.best) for t in trials):
        plot_best_vs_fields(out / "best_vs_fields.png", [t.row for t in trials], space, metric)

    if importances:
        shares = ", ".join(f"{k} {v:.3f}" for k, v in importances.items())
        lines.append(f"importances for {SCORE} (PED-ANOVA, from {len(study.trials)} trials): {shares}")
    tables = {EVALUATED: held_out} if held_out else {}
    if served:
        tables[BY_CODEBOOKS] = served
    if BITRATE in params.get("objectives", "") and useful:
        quality = best_column(metric)
        tables[PARETO] = front_table([t.row.columns(metric) for t in useful], quality, list(space))
        front = [(r["kbps"], r[quality]) for r in tables[PARETO] if r["front"]]
        points = [(t.row.kbps, t.row.best, t.row.useful) for t in trials]
        plot_pareto(out / "pareto.png", points, front, metric)
    if params.get("scheduler") in ("pbt", "pb2") and useful:
        lines.append(schedule_line(client, parent, out))
    judged = [part for title, table in tables.items() for part in ("", title, format_table(table))]
    text = "\n".join([format_table(rows), "", *lines, *judged])
    (out / "report.txt").write_text(text + "\n")
    body = [f"<p>{html.escape(line)}</p>" for line in lines]
    for title, table in tables.items():
        body += [f"<h3>{html.escape(title)}</h3>", html_table(table)]
    body += [
        "<h3>Trials</h3>",
        f"<p>Each trial at its best epoch by {html.escape(metric)} (the epoch best.pt holds); device-hours "
        "are the trial's wall time times the devices it held.</p>",
        html_table(rows),
    ]
    for name, caption in FIGURES.items():
        if (out / name).exists():
            body += [f"<h3>{html.escape(caption)}</h3>", f'<img alt="{name}" src="{data_uri(out / name)}">']
    write_page(out / "report.html", f"Search {parent.info.run_name}", "\n".join(body))
    return text


def schedule_line(client: MlflowClient, parent: Run, out: Path) -> str:
    """The PBT search's exported schedule (the best trial's weights by epoch), drawn; a line on it."""
    path = Path(client.download_artifacts(parent.info.run_id, SCHEDULE_FILE, str(out)))
    config, schedule = load_schedule(path)
    plot_schedule(out / "schedule.png", schedule, config.num_epochs)
    return (
        f"schedule of the best trial: weights {describe(schedule, config.num_epochs)} ({path}); "
        f"replay it: python train_codec.py --schedule {path}"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        check_price(args.price_per_gpu_hour)
        client, parent, note = find_search(args)
        space = distributions(parent)
        trials = load_trials(client, parent, list(space), metric_of(parent))
        if not trials:
            raise UsageError(f"search {parent.info.run_name!r} has no trials yet")
    except UsageError as e:  # a bug keeps its traceback
        print(f"tune_codec.report: error: {e}", file=sys.stderr)
        return 2
    price = args.price_per_gpu_hour
    if price is None and "price_per_gpu_hour" in parent.data.params:
        price = float(parent.data.params["price_per_gpu_hour"])
    out = args.out or Path("reports") / parent.info.run_name
    out.mkdir(parents=True, exist_ok=True)
    text = write_report(client, parent, space, trials, price, out)
    client.log_artifacts(parent.info.run_id, str(out), "report")
    if note:
        print(note)
    print(text)
    print(f"report: {out / 'report.html'} (and report.txt, PNGs); logged to the search's run under report/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
