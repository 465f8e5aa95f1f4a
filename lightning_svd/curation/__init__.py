"""Curation: source videos -> the clip table (SPEC contract) with cuts, captions and four scores.

Entry points: `pipeline.VideoCurator` (one video -> rows; pure, built from the `curation` config),
`runner.curate_videos` (shards, resume, progress), `engines.LocalEngine` / `ray_engine.RayEngine`,
`table.ClipTableWriter` (shards with done markers; lightning_svd/clip_table.py reads them) and
`quality.evaluate_against_truth` (synthetic ground truth).
Torch models (CLIP, the LAION head, RAFT, CoCa, VideoBLIP and the caption LLM through transformers) are imported
only when a configuration uses them.
"""
