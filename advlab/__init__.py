"""advlab: the helper package of the advlab book on adversarial robustness of image classifiers."""
__version__ = "0.2.0"
