"""ssmscope: train S4D-family vulnerability detectors and read what their kernels learn."""

__version__ = "0.1.0"
