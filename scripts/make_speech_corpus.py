"""Build the real-speech corpus: Debian's recorded telephony prompts, English and Spanish.

    apt-get install asterisk-core-sounds-en-g722 asterisk-core-sounds-es-g722
    apt-get install asterisk-core-sounds-fr-g722 asterisk-core-sounds-it-g722   # unseen voices, optional
    python3 scripts/make_speech_corpus.py --out speech

Without root: `apt-get download` both packages, `dpkg -x` each into one folder, and pass
--sounds FOLDER/usr/share/asterisk/sounds. The prompts (about 1100 files, 53 minutes, 16 kHz G.722 at
64 kbps) are decoded with the g722 wheel and written as 16 kHz FLAC to OUT/train/... and
OUT/heldout/..., split by file name: the same file always lands on the same side. Both packages are one
speaker, Allison Smith (en_US_f_Allison, es_MX_f_Allison). Prompts of any other voice found under
--sounds (fr_CA_f_June, it_IT_m_Carlo, ru_RU_f_IvrvoiceRU from the fr, it and ru packages) go whole to
OUT/unseen/VOICE/...: speakers and languages the training never heard. Train a codec on OUT/train and
judge it on OUT/heldout or OUT/unseen with `python -m tune_codec.evaluate`.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import G722
import numpy as np
import soundfile as sf
from tqdm import tqdm

from tune_codec.cli import flag

SOUNDS = Path("/usr/share/asterisk/sounds")
PACKAGES = "asterisk-core-sounds-en-g722 asterisk-core-sounds-es-g722"
TRAINED = ("en_US_f_Allison", "es_MX_f_Allison")  # the voices split into train/ and heldout/
RATE = 16000


def held_out(name: str, share: float) -> bool:
    """Deterministic by file name, and independent of the train/validation split that training makes of
    OUT/train (tune_codec.data.segments hashes the bare name: the same hash here would leave validation
    empty)."""
    return int(hashlib.sha1(f"heldout:{name}".encode()).hexdigest(), 16) / 16**40 < share


def parse_args(argv):
    p = argparse.ArgumentParser(prog="scripts/make_speech_corpus.py", description=__doc__.splitlines()[0])
    p.add_argument(
        *flag("--sounds"), type=Path, default=SOUNDS, help=f"the .g722 prompts (default: {SOUNDS})"
    )
    p.add_argument(*flag("--out"), type=Path, default=Path("speech"), help="corpus folder (default: speech)")
    p.add_argument(
        *flag("--heldout"), type=float, default=0.15, help="share of files held out (default: 0.15)"
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    files = sorted(args.sounds.rglob("*.g722")) if args.sounds.is_dir() else []
    if not files:
        error = f"no .g722 files under {str(args.sounds)!r} (apt-get install {PACKAGES})"
        print(f"make_speech_corpus: error: {error}", file=sys.stderr)
        return 2
    if not 0 < args.heldout < 1:
        print(f"make_speech_corpus: error: --heldout {args.heldout} must be between 0 and 1", file=sys.stderr)
        return 2
    seconds = {"train": 0.0, "heldout": 0.0, "unseen": 0.0}
    count = {"train": 0, "heldout": 0, "unseen": 0}
    for path in tqdm(files, desc="decoding G.722", unit="file"):
        name = str(path.relative_to(args.sounds).with_suffix(".flac"))
        if path.relative_to(args.sounds).parts[0] not in TRAINED:
            side = "unseen"
        else:
            side = "heldout" if held_out(name, args.heldout) else "train"
        decoder = G722.G722(RATE, 64000)  # one a file: a decoder carries state from one file to the next
        pcm = np.asarray(decoder.decode(path.read_bytes()), dtype=np.int16)
        target = args.out / side / name
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(target, pcm, RATE, subtype="PCM_16")
        seconds[side] += len(pcm) / RATE
        count[side] += 1
    voices = sorted({path.relative_to(args.sounds).parts[0] for path in files})
    for side in ("train", "heldout", "unseen"):
        if count[side]:
            print(f"{args.out / side}: {count[side]} files, {seconds[side] / 60:.1f} min")
    print(f"voices: {', '.join(v for v in voices if v in TRAINED)}; {RATE} Hz FLAC")
    unseen = [v for v in voices if v not in TRAINED]
    if unseen:
        print(f"unseen voices (all in {args.out / 'unseen'}): {', '.join(unseen)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
