"""python -m tune_codec.evaluate CHECKPOINT DATA_DIR ...: scored beside Opus (tune_codec.evaluation)."""

from tune_codec.evaluation.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
