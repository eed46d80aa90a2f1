"""advlab: the helper package of the advlab book on adversarial robustness of image classifiers.

Importing it tunes glibc's allocator for PyTorch's large, short-lived buffers
(:func:`advlab.config.tune_allocator`; ``ADVLAB_MALLOC_TUNING=0`` turns that off).
"""
from .config import tune_allocator as _tune_allocator

__version__ = "0.2.0"
_tune_allocator()
