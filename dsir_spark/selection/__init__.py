"""Selecting from scored documents: the seeded randomness, exact top-k / Gumbel / token-budget resampling
with quotas, the shards and their manifest, and the figures that evaluate a selection (the report's)."""
