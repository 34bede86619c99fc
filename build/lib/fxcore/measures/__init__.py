"""How two runs differ, one measure per module: weight statistics, CKA and drift, intervals,
probes, other similarity families, units, stitching, mode connectivity, per-image dynamics."""
