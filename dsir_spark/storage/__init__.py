"""Reading and writing data: datasets (JSON Lines, Parquet, tables) with their checks, JSON and Parquet
records on any filesystem Spark reaches, compacted snapshots of many small files, and diagnoses of
failures that name the input behind them."""
