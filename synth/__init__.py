"""Class-conditional diffusion for rare lesion classes: ``synth.train``, ``synth.generate``, ``synth.evaluate``."""
