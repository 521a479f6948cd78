"""Demo data and the sky simulator behind it (``python -m imgpipe.demo make|check DIR``)."""
