"""python -m tune_codec.report ...: a search's report (tune_codec.report.report)."""

from tune_codec.report.report import main

raise SystemExit(main())
