"""Frozen PP-OCRv4 detection trunk (onnxruntime) for the ``ppocr`` teacher backbone.

Placeholder constants; the trunk itself is implemented with the training issue.
"""

PPOCR_CHANNELS: tuple[int, int] = (96, 384)
