"""A trained codec judged on audio: scores, Opus beside it, .codes files (encode/decode)."""
