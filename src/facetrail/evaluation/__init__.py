"""Accuracy evaluation (LFW verification and identification) and score calibration.

Everything here measures the production pipeline as it is: the same decoder, detector, alignment and
embedder the CLI and service use. See docs/accuracy.md and docs/calibration.md.
"""
