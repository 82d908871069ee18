"""vcam: a Linux virtual webcam that changes everything behind you (MediaPipe selfie segmentation)."""

__version__ = "0.1.0"
