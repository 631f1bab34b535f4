"""python -m tune_codec.doctor SOURCE [--write-space FILE] [--search [tune_codec.run flags]] [--json]

From a failing run's numbers to what is wrong (each finding's evidence, mechanism and prescription), a search
space around the run that tests the prescription, and that search."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from tune_codec.cli import flag
from tune_codec.config import DEFAULTS, load_config, named_configs, to_flags
from tune_codec.doctor.findings import Finding
from tune_codec.doctor.prescribe import prescribe, write_space
from tune_codec.doctor.rules import diagnose
from tune_codec.doctor.sources import ACCEPTED, Case, Source, read_source
from tune_codec.errors import DoctorError, UsageError
from tune_codec.search import driver
from tune_codec.tracking import EXPERIMENT_HELP, URI_HELP, experiment_name

PROG = "python -m tune_codec.doctor"
WIDTH = 110


def parse_args(argv) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        prog=PROG,
        allow_abbrev=False,  # an abbreviation could swallow a flag meant for tune_codec.run
        description="Diagnose a failing codec run from its numbers, prescribe a search space around it.",
    )
    p.add_argument("source", help=f"what to diagnose: {ACCEPTED}")
    p.add_argument(
        *flag("--write-space"),
        type=Path,
        metavar="FILE",
        help="write a search space around the run's config: the fields the findings implicate, its config as "
        "the first point",
    )
    p.add_argument(
        *flag("--search"),
        action="store_true",
        help="run that space (written to --write-space, default doctor-NAME.yaml); every flag after SOURCE "
        "the doctor does not know goes to tune_codec.run (--data-dir, --trials, --name, --storage-path ...)",
    )
    p.add_argument(*flag("--json"), action="store_true", help="print the diagnosis as JSON, for a program")
    p.add_argument(
        *flag("--config"),
        help=f"the run's config when SOURCE is pasted text, which holds none: a named config "
        f"({', '.join(named_configs())}) or a YAML file (default: the defaults)",
    )
    p.add_argument(*flag("--tracking-uri"), help=URI_HELP)
    p.add_argument(*flag("--experiment-name"), help=EXPERIMENT_HELP)
    args, rest = p.parse_known_args(argv)
    if rest and not args.search:
        p.error(f"unrecognized arguments: {' '.join(rest)} (flags for tune_codec.run need --search)")
    args.experiment_name = experiment_name(args.experiment_name)
    return args, rest


def main(argv=None) -> int:
    args, rest = parse_args(argv)
    try:
        if args.json and args.search:
            raise DoctorError(
                "--json with --search: the search prints its own output; write the space and run it"
            )
        config = load_config(args.config) if args.config else None
        source = read_source(args.source, args.tracking_uri, args.experiment_name, config, sys.stdin)
        diagnoses = [(case, diagnose(case.history)) for case in source.cases]
        space = None
        if args.write_space or args.search:
            if source.search:
                raise DoctorError(
                    f"{'--write-space' if args.write_space else '--search'}: {source.label}; a space is "
                    "written around one run: give one trial's run id"
                )
            space = args.write_space or Path(f"doctor-{source.name}.yaml")
            case, findings = diagnoses[0]
            write_space(space, prescribe(findings, case.history.config or DEFAULTS), findings, args.source)
    except UsageError as e:  # a bug keeps its traceback
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(as_json(source, diagnoses, space), indent=1))
        return 0
    print(as_text(source, diagnoses, space))
    if not args.search:
        return 0
    passed = [f"--{k.replace('_', '-')}" for k in ("tracking_uri", "experiment_name") if getattr(args, k)]
    through = [x for k in passed for x in (k, getattr(args, k[2:].replace("-", "_")))]
    return driver.main(["--space", str(space), *through, *rest])


def as_json(source: Source, diagnoses: list[tuple[Case, list[Finding]]], space: Path | None) -> dict:
    return {
        "source": source.label,
        "runs": [
            {
                "run": case.label,
                "run_id": case.run_id,
                "epochs": len(case.history.epochs),
                "ended": case.history.ended,
                "findings": [f._asdict() for f in findings],
            }
            for case, findings in diagnoses
        ],
        "space": str(space) if space else None,
    }


def wrapped(label: str, text: str) -> str:
    return textwrap.fill(text, WIDTH, initial_indent=f"   {label:<14}", subsequent_indent=" " * 17)


def as_text(source: Source, diagnoses: list[tuple[Case, list[Finding]]], space: Path | None) -> str:
    lines = [f"doctor: {source.label}"]
    for case, findings in diagnoses:
        h = case.history
        if source.search:
            lines += ["", case.label]
        metric, epochs = h.score_metric(), h.epochs
        if points := h.points(metric):
            best = max(points, key=lambda p: p[1])
            lines.append(f"{len(epochs)} {h.unit}(s); best {metric} {best[1]:.3g} at {h.unit} {best[0]}")
        if h.config:
            flags = to_flags(h.config)  # the fields that differ from the defaults, as name value pairs
            changed = ", ".join(f"{k[2:]} {v}" for k, v in zip(flags[::2], flags[1::2], strict=True))
            lines.append(textwrap.fill(f"config: {changed or 'the defaults'}", WIDTH))
        elif not source.search:
            lines.append("config: not in the source (--config names it; a space starts from the defaults)")
        if h.ended and not source.search:
            lines.append(f"ended: {h.ended}")
        for i, f in enumerate(findings, 1):
            fields = ", ".join(f"{k} {w}" for k, w in f.fields.items())
            lines += [
                "",
                f"{i}. {f.name}",
                wrapped("evidence:", f.evidence),
                wrapped("mechanism:", f.mechanism),
            ]
            lines += [
                wrapped("prescription:", f.prescription),
                wrapped("search:", f"{fields} (on {f.metric})"),
            ]
        if not findings:
            lines.append(
                f"no finding from {len(epochs)} {h.unit}(s): the level, codebook and loss look healthy, and "
                "the rules that read a trend (learning slowly, worsening, more steps) need 3 or more"
            )
    if space:
        lines += ["", f"space: {space} (the run's config is its first point)"]
        lines.append(f"search it: python -m tune_codec.run --space {space} --data-dir THE_RUN'S_DATA")
    return "\n".join(lines)
