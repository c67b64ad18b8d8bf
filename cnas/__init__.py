"""cnas: constrained multi-objective neural architecture search over Once-For-All spaces."""

__version__ = "0.1.0"
