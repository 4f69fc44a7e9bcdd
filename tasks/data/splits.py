"""The split names, in order. A module of their own: the DVC driver and the ingest stage need
them without pandas, which tasks.data.prepare imports (0.4 s of a 0.5 s ingest stage process)."""
SPLITS = ("train", "validation", "test")
