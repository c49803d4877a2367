"""The run directory: each stage's output and record with the fingerprint of what it depends on, the
lease that keeps one run per directory, and the scored documents a run (or external scores) provide."""
