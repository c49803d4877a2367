"""The featurizer and what it derives from text: tokens (wordpunct), hashed n-gram buckets (in Python and
in the compiled ``_featurize`` extension), n-gram strings behind a bucket, chunks, length corrections, and
the Spark pass that counts buckets over a dataset. Imports only the settings and the storage layer."""
