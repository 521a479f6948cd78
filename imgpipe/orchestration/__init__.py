"""Prefect layer: tasks and the ``imgpipe`` flow over the pure core."""
