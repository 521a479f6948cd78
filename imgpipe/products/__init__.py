"""What a run leaves beside its images: statistics, quick-looks, provenance records, report."""
