"""advlab: the helper package of the advlab book on adversarial robustness of image classifiers."""
__version__ = "0.1.0"
