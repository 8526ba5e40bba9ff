"""cnnbench: train, evaluate and compare the classic convolutional networks."""

__version__ = "0.1.0"
