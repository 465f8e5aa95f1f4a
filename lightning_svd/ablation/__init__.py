"""The curation ablation's parts (task `ablation`): its data, the per-arm evaluation and the aggregation."""
