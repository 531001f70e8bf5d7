"""Datasets, splits and the image cache.

Public entry: :func:`dermkit.data.prepare.prepare_data` turns a :class:`dermkit.config.DataConfig`
into a :class:`dermkit.data.prepare.PreparedData` (records, split, cached image array).
Submodules are imported where used so that ``import dermkit.data`` stays cheap.
"""
