"""Prefect flows: alignment, fusion, stitch (both) and discovery of new datasets."""
