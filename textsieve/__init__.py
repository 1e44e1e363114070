"""textsieve: fast text/non-text image classification with knowledge distillation."""

__version__ = "0.1.0"
