"""python -m tune_codec.doctor SOURCE ...: see tune_codec/doctor/cli.py."""

from tune_codec.doctor.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
