"""advlab: the helper package of the advlab book on adversarial robustness of image classifiers.

Importing it changes nothing outside the package.  A chapter run (``advlab run`` or
:func:`advlab.chapter.run_chapter`) tunes glibc's allocator for PyTorch's large, short-lived
buffers first (:func:`advlab.config.tune_allocator`; ``ADVLAB_MALLOC_TUNING=0`` turns that off).
"""
__version__ = "0.2.0"
