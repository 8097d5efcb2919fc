"""Evaluation: benchmarks (:mod:`.tasks`, one file each), answer metrics (:mod:`.metrics`), data loaders
(:mod:`.data`), the resumable runner (:mod:`.runner`), sweeps (:mod:`.sweep`), run folders
(:mod:`.rundir`) and the statistics (:mod:`.stats`: Wilson intervals, paired bootstrap, McNemar)."""
