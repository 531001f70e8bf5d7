"""Classifier fine-tuning and evaluation, measured per class.

Entry points: ``python -m finetune.train`` and ``python -m finetune.evaluate``. Building blocks, one
concern per file: ``focal_loss``, ``class_balanced_loss``, ``class_weights``, ``losses`` (registry),
``sampler``, ``transforms``, ``backbone`` (initialisation), ``synthetic`` (manifest reading),
``data``, ``module`` (the Lightning classifier), ``outputs`` (the files a run writes).
"""
