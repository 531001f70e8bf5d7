"""dermkit: the library shared by the ssl, synth, finetune and bench stages.

Importing this package is cheap: submodules are imported where they are used.
"""

__version__ = "0.1.0"
