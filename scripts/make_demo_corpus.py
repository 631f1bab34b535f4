"""Regenerate the bundled demo corpus: synthetic Telugu speech from festival (festvox-te-nsk) and espeak-ng.

Every sentence is rendered once per voice setting and written as <out>/<setting>/sNN.flac (16 kHz mono).
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tune_codec.data.segments import DEMO_CORPUS

INSTALL = "apt-get install festival festvox-te-nsk espeak-ng sox"
FESTIVAL = [(95, 12), (140, 20)]  # (f0 mean Hz, f0 std Hz)
ESPEAK = [("m3", 40, 200), ("f1", 70, 215)]  # (voice variant, pitch 0-99, words per minute)

# festvox-te-nsk leaves Int_Method unset, which festival 2.5 rejects ("Int_Method not defined"),
# and its default Duration_Stretch of 1.4 is slow.
FESTIVAL_SETUP = """(voice_telugu_NSK_diphone)
(Parameter.set 'Int_Method 'Simple)
(set! int_simple_params '((f0_mean {mean}) (f0_std {std})))
(Parameter.set 'Duration_Stretch 1.0)
"""


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed ({proc.returncode}): {proc.stderr.strip()}")


def festival(sentences: list[str], tmp: Path, mean: int, std: int) -> list[Path]:
    """Render all sentences in one batch run of festival."""
    tmp.mkdir()
    wavs = [tmp / f"s{i:02d}.wav" for i in range(1, len(sentences) + 1)]
    scheme = FESTIVAL_SETUP.format(mean=mean, std=std)
    for text, wav in zip(sentences, wavs, strict=True):
        text = text.replace("\\", "\\\\").replace('"', '\\"')
        scheme += f'(utt.save.wave (utt.synth (Utterance Text "{text}")) "{wav}" \'riff)\n'
    (tmp / "render.scm").write_text(scheme, encoding="utf-8")
    run(["festival", "-b", str(tmp / "render.scm")])
    return wavs


def espeak(sentences: list[str], tmp: Path, variant: str, pitch: int, speed: int) -> list[Path]:
    tmp.mkdir()
    wavs = [tmp / f"s{i:02d}.wav" for i in range(1, len(sentences) + 1)]
    for text, wav in zip(sentences, wavs, strict=True):
        run(["espeak-ng", "-v", f"te+{variant}", "-p", str(pitch), "-s", str(speed), "-w", str(wav), text])
    return wavs


def to_flac(wavs: list[Path], out: Path) -> None:
    """16 kHz mono 16-bit FLAC peaking at -3 dBFS; no dither, so reruns are byte-identical."""
    out.mkdir(exist_ok=True)
    for wav in wavs:
        flac = out / wav.with_suffix(".flac").name
        run(["sox", "-D", str(wav), "-b", "16", str(flac), "channels", "1", "rate", "16k", "norm", "-3"])
    print(f"{out.name}: {len(wavs)} files", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEMO_CORPUS, help="output folder (default: %(default)s)")
    parser.add_argument(
        "--sentences",
        type=Path,
        default=DEMO_CORPUS / "sentences.txt",
        help="one sentence a line (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    missing = [tool for tool in ("festival", "espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        print(f"error: {', '.join(missing)} not found; install with: {INSTALL}", file=sys.stderr)
        return 2

    lines = args.sentences.read_text(encoding="utf-8").splitlines()
    sentences = [line.strip() for line in lines if line.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sentences.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        for mean, std in FESTIVAL:
            name = f"festival_nsk_f0{mean}"
            to_flac(festival(sentences, Path(tmp) / name, mean, std), args.out / name)
        for variant, pitch, speed in ESPEAK:
            name = f"espeak_{variant}_p{pitch}_s{speed}"
            to_flac(espeak(sentences, Path(tmp) / name, variant, pitch, speed), args.out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
