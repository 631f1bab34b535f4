"""Judge a codec as the field does: python -m tune_codec.evaluate CHECKPOINT DATA_DIR [--reference opus]

Every audio file under DATA_DIR (any format, rate and channel count; long files in pieces) is coded and
decoded by the checkpoint, and by Opus at the same bitrate, and scored against the input: SNR, SI-SDR,
PESQ (wideband at 16 kHz and above, narrowband below), STOI, mel distance, and the bitrate coded. A
codec trained with quantizer dropout is scored at each bitrate it serves, decoded from 1 to n_codebooks
codebooks, with Opus at each of those bitrates it reaches. The means are printed; every file's scores go
to CSV and JSON in --out, and to the checkpoint's MLflow run (eval/..., eval/codebooks_K/...) when it has
one.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from tqdm import tqdm

from tune_codec.cli import flag, format_table
from tune_codec.codec.losses import CodecLoss, MultiScaleMel
from tune_codec.config import Config
from tune_codec.data.corpus import decode, find_audio
from tune_codec.errors import DataError, UsageError
from tune_codec.evaluation import opus
from tune_codec.evaluation.codes import audio_of, check_codebooks, codes_of, open_checkpoint
from tune_codec.metrics import perceptual, si_sdr_db, snr_db
from tune_codec.names import METRIC_NAMES
from tune_codec.tracking import (
    RUN,
    RUN_FILE,
    UNREACHABLE,
    URI_HELP,
    one_line,
    read_state,
    resolve_tracking_uri,
)

PROG = "python -m tune_codec.evaluate"
SCORES = tuple(METRIC_NAMES)  # the table's score columns


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="best.pt / last.pt, or runs:/RUN_ID/checkpoint/best.pt")
    p.add_argument("data_dir", type=Path, help="folder of audio files, searched recursively")
    p.add_argument(
        *flag("--reference"),
        choices=("opus", "none"),
        default="opus",
        help="a reference codec (default: opus, with opus-tools)",
    )
    p.add_argument(
        *flag("--opus-kbps"),
        type=float,
        nargs="+",
        metavar="KBPS",
        help=f"Opus bitrates to score beside the checkpoint, each >= {opus.MIN_KBPS:g} "
        "(default: the checkpoint's bitrate)",
    )
    p.add_argument(
        *flag("--codebooks"),
        type=int,
        nargs="+",
        metavar="K",
        help="decode from the first K codebooks, for each K given (default: 1 to n_codebooks for a codec "
        "trained with quantizer dropout, else n_codebooks)",
    )
    p.add_argument(
        *flag("--out"),
        type=Path,
        default=Path("evaluation"),
        help="CSV and JSON go here (default: evaluation)",
    )
    p.add_argument(*flag("--tracking-uri"), help=f"for a runs:/ checkpoint and the eval/ metrics: {URI_HELP}")
    return p.parse_args(argv)


def score(reference: np.ndarray, decoded: np.ndarray, rate: int, mel: MultiScaleMel) -> dict[str, float]:
    """The field's scores of decoded against reference, both (T,) at `rate`."""
    x, y = torch.from_numpy(reference)[None], torch.from_numpy(decoded)[None]
    with torch.no_grad():
        distance = mel(y[:, None], x[:, None]).item()
    heard = perceptual(reference, decoded, rate)
    scores = {"snr_db": snr_db(x, y), "si_sdr_db": si_sdr_db(x, y), **heard, "mel": distance}
    return {heading: scores[name] for heading, name in METRIC_NAMES.items()}


def codebook_counts(config: Config, asked: list[int] | None) -> list[int]:
    """The numbers of codebooks to decode from: those asked for, or every one a codec trained with
    quantizer dropout serves, or all of them."""
    if asked:
        return sorted({check_codebooks(config, k) for k in asked})
    return list(range(1, config.n_codebooks + 1)) if config.quantizer_dropout else [config.n_codebooks]


def codec_name(config: Config, k: int) -> str:
    """A row's codec: the checkpoint, or the checkpoint decoded from its first k codebooks."""
    return "checkpoint" if k == config.n_codebooks else f"checkpoint, {k} of {config.n_codebooks} codebooks"


def evaluate(
    model,
    config: Config,
    files: list[Path],
    root: Path,
    reference: str,
    opus_kbps: list[float] | None,
    counts: list[int] | None = None,
) -> tuple[list[dict], dict, str]:
    """Rows (one per file and codec), files skipped with why, and a note on the reference: Opus at each
    of opus_kbps, by default at each bitrate decoded (from each of `counts` codebooks, all by default)
    that Opus reaches."""
    counts = counts or [config.n_codebooks]
    note = opus.missing() if reference == "opus" else "none asked for"
    rates = opus_kbps or [config.kbps_at(k) for k in counts if config.kbps_at(k) >= opus.MIN_KBPS]
    if note is None and not rates:
        note = (
            f"Opus takes at least {opus.MIN_KBPS:g} kbps; this codec runs at {config.kbps_at(counts[-1]):g}"
        )
    mel = CodecLoss(config).mel  # as val/mel_distance is measured in training
    rows, skipped = [], {}
    for path in tqdm(files, desc="evaluating", unit="file", leave=False):
        name = str(path.relative_to(root))
        try:
            audio = decode(path, config.sample_rate)
            if len(audio) < config.segment_samples:
                raise DataError(f"shorter than one segment ({config.segment_seconds:g} s)")
        except DataError as e:
            skipped[name] = str(e)
            print(f"skipped {name}: {e}", file=sys.stderr)
            continue
        seconds = len(audio) / config.sample_rate
        codes = codes_of(model, config, audio)
        for k in counts:
            coded_bits = codes[:k].numel() * config.bits_per_code
            decoded = audio_of(model, config, codes[:k], len(audio))
            scores = score(audio, decoded, config.sample_rate, mel)
            kbps = coded_bits / seconds / 1000
            rows.append({"file": name, "codec": codec_name(config, k), "kbps": kbps, **scores})
        for kbps in rates if note is None else ():
            decoded, size = opus.roundtrip(audio, config.sample_rate, kbps)
            scores = score(audio, decoded, config.sample_rate, mel)
            rows.append(
                {"file": name, "codec": f"opus {kbps:g} kbps", "kbps": 8 * size / seconds / 1000, **scores}
            )
    return rows, skipped, note or ""


def metric_prefix(codec: str) -> str:
    """Where a codec's means go in MLflow: eval/ for the checkpoint, eval/codebooks_2/ for it decoded from
    2 codebooks, eval/opus_8kbps/ for Opus at 8 kbps."""
    if codec == "checkpoint":
        return "eval"
    if codec.startswith("checkpoint, "):
        return f"eval/codebooks_{codec.split()[1]}"
    return "eval/" + codec.replace(" kbps", "kbps").replace(" ", "_")


def means(rows: list[dict]) -> list[dict]:
    """One row per codec: the mean of each score over the files (PESQ over the files it scored)."""
    out = []
    for codec in dict.fromkeys(row["codec"] for row in rows):
        mine = [row for row in rows if row["codec"] == codec]
        mean = {"codec": codec, "files": len(mine)}
        for key in ("kbps", *SCORES):
            values = [row[key] for row in mine if math.isfinite(row[key])]
            mean[key] = float(np.mean(values)) if values else math.nan
        out.append(mean)
    return out


def run_of(checkpoint: str, tracking_uri: str | None) -> tuple[str | None, str]:
    """The MLflow run a checkpoint belongs to, and its tracking URI: the RUN_ID of runs:/RUN_ID/..., or
    the run recorded beside a train_codec.py checkpoint (in the store it was recorded in, unless told)."""
    if checkpoint.startswith("runs:/"):
        return checkpoint.removeprefix("runs:/").split("/")[0], resolve_tracking_uri(tracking_uri)
    beside = Path(checkpoint).parent / RUN_FILE
    saved = read_state(beside) if beside.exists() else {}
    return saved.get("runs", {}).get(RUN), resolve_tracking_uri(tracking_uri or saved.get("tracking_uri"))


def log_to_run(client: MlflowClient, run_id: str, table: list[dict], out: Path) -> None:
    """eval/<score> for the checkpoint, eval/opus_<K>kbps/<score> for Opus; the CSV and JSON as artifacts."""
    metrics = []
    for row in table:
        prefix = metric_prefix(row["codec"])
        for key in ("kbps", *SCORES):
            if math.isfinite(row[key]):
                metrics.append(Metric(f"{prefix}/{METRIC_NAMES.get(key, key)}", row[key], 0, 0))
    client.log_batch(run_id, metrics=metrics)
    client.log_artifacts(run_id, str(out), "eval")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        for kbps in args.opus_kbps or ():
            if not kbps >= opus.MIN_KBPS:
                raise UsageError(f"--opus-kbps {kbps:g}: Opus takes at least {opus.MIN_KBPS:g} kbps")
        model, config = open_checkpoint(args.checkpoint, args.tracking_uri)
        counts = codebook_counts(config, args.codebooks)
        root = args.data_dir.resolve()
        files = find_audio(root)
        if not files:
            raise DataError(f"no audio files under {str(root)!r}")
        args.out.mkdir(parents=True, exist_ok=True)
    except (UsageError, OSError) as e:  # a bug keeps its traceback
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print(f"codec: {config.describe()}")
    rows, skipped, note = evaluate(model, config, files, root, args.reference, args.opus_kbps, counts)
    if not rows:
        print(
            f"{PROG}: error: none of the {len(files)} files under {str(root)!r} could be read",
            file=sys.stderr,
        )
        return 2
    table = means(rows)
    write(args.out, rows, table, skipped, note, args.checkpoint)
    print(format_table(table))
    reference = note or "Opus (opus-tools)"
    print(f"{len(rows) // len(table)} files scored, {len(skipped)} skipped; reference: {reference}")
    print(f"per file: {args.out / 'files.csv'}, all of it: {args.out / 'evaluation.json'}")
    run_id, uri = run_of(args.checkpoint, args.tracking_uri)
    if run_id:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        try:
            log_to_run(MlflowClient(uri), run_id, table, args.out)
        except UNREACHABLE as e:  # the scores are on disk all the same
            why = f"cannot log to run {run_id} at {uri} ({one_line(e)})"
            print(f"mlflow: {why}; the scores are in {args.out}", file=sys.stderr)
            return 1
        print(f"mlflow: eval/ metrics logged to run {run_id} at {uri}")
    return 0


def write(out: Path, rows: list[dict], table: list[dict], skipped: dict, note: str, checkpoint: str) -> None:
    for name, data in (("files.csv", rows), ("means.csv", table)):
        with open(out / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(data[0]))
            writer.writeheader()
            writer.writerows(data)
    report = {
        "checkpoint": checkpoint,
        "means": table,
        "files": rows,
        "skipped": skipped,
        "reference_note": note,
    }
    (out / "evaluation.json").write_text(json.dumps(report, indent=1, allow_nan=True))


if __name__ == "__main__":
    raise SystemExit(main())
