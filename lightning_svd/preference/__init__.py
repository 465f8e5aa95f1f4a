"""The human-preference study: a small web app that collects pairwise votes on a study pack, ranks the arms.

Nothing in this package imports torch: a rater-facing server should start in a second on any laptop.
"""
