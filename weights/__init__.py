"""Shipped model weights (installed as the ``textsieve.weights`` package data)."""
