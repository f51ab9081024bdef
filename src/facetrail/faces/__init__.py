"""The face pipeline: decode → detect → align → quality → embed.

Each stage is a small unit with a typed result. Nothing here knows about storage, the web or the CLI.
"""

from facetrail.faces.pipeline import AnalyzedFace, FacePipeline, get_pipeline
from facetrail.faces.types import DecodedImage, DetectedFace, Embedding, QualityReport

__all__ = [
    "AnalyzedFace",
    "DecodedImage",
    "DetectedFace",
    "Embedding",
    "FacePipeline",
    "QualityReport",
    "get_pipeline",
]
