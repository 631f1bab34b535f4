"""The search: python -m tune_codec.run --space search_spaces/amplitude.yaml [--address auto] ...

The documented entry point; the driver is tune_codec.search.driver."""

from tune_codec.search.driver import main

if __name__ == "__main__":
    raise SystemExit(main())
