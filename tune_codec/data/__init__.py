"""Audio files -> one int16 cache per corpus (corpus) -> train/validation segments in it (segments)."""
