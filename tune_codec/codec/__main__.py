"""python -m tune_codec.codec encode|decode ...: the .codes files command (tune_codec.evaluation.codes)."""

from tune_codec.evaluation.codes import main

raise SystemExit(main())
