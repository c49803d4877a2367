"""Per-document random numbers derived from (seed, id): the same on any partitioning, executor or rerun."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

_TWO_53 = float(2**53)


def uniform(seed: int | Column, ident: Column, salt: str) -> Column:
    """A uniform number in the open interval (0, 1) from a 64-bit hash of (salt, seed, id).

    The top 53 bits of xxhash64 become a double's mantissa; +0.5 keeps both ends out, so
    -log(-log(u)) is always finite.
    """
    seed_col = seed if isinstance(seed, Column) else F.lit(int(seed)).cast("long")
    bits = F.shiftrightunsigned(F.xxhash64(F.lit(salt), seed_col, ident), 11)
    return (bits.cast("double") + F.lit(0.5)) / F.lit(_TWO_53)
