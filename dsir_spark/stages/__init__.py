"""The stage layer: one module per stage, each reading its inputs from the run directory, calling the
algorithm modules, and writing its output and its record (``dsir_spark.run.directory``).

    count -> fit -> score -> resample -> report
"""
