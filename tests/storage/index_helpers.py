"""A minimal enrolment for the search and index tests: real photos through the real pipeline, written as Face
rows directly (the enrolment service has its own tests), then handed to index_sync as enrolment does."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from face_fixtures import BIDEN, FACEAPI, JOHNS, OBAMA
from facetrail.context import AppContext
from facetrail.faces.pipeline import FacePipeline
from facetrail.gallery import index_sync
from facetrail.storage.models import Face, Gallery, Subject

# one photo of each person goes into the gallery; the other photos of the same people are probes
GALLERY_PHOTOS: dict[str, Path] = {
    "OBAMA": OBAMA,
    "BIDEN": BIDEN,
    "AMY": FACEAPI / "amy" / "amy1.png",
    "RAJ": FACEAPI / "raj" / "raj1.png",
    "SHELDON": FACEAPI / "sheldon" / "sheldon1.png",
    "SALLEY": JOHNS / "John_Salley" / "000179_02159509.jpg",
    "SAVAGE": JOHNS / "John_Savage" / "000264_01099001.jpg",
    "SIMM": JOHNS / "John_Simm" / "000288_00470387.jpg",
}


@dataclass(frozen=True)
class EnrolledFace:
    face_id: int
    subject_external_id: str
    vector: np.ndarray


def create_gallery(ctx: AppContext, name: str, model_id: str) -> int:
    with ctx.db.transaction() as session:
        gallery = Gallery(name=name, legal_basis="test", source_system="tests", model_id=model_id, created_by="t")
        session.add(gallery)
        session.flush()
        return gallery.id


def enroll_photos(
    ctx: AppContext, pipeline: FacePipeline, gallery_id: int, photos: dict[str, Path]
) -> list[EnrolledFace]:
    """One face per photo (the largest), one subject per key; rows committed, then the index updated."""
    enrolled = []
    with ctx.db.transaction() as session:
        for external_id, path in photos.items():
            image = pipeline.decode_path(path)
            face, _ = pipeline.analyze_one(image)
            assert face.embedding is not None
            subject = Subject(gallery_id=gallery_id, external_id=external_id, name=external_id.title())
            session.add(subject)
            session.flush()
            vector = face.embedding.vector.astype("<f4")
            ok, jpeg = cv2.imencode(".jpg", face.aligned)
            assert ok
            row = Face(
                gallery_id=gallery_id,
                subject_id=subject.id,
                image_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                source_system="tests",
                enrolled_by="t",
                box={"x": 0},
                quality={},
                model_id=face.embedding.model_id,
                embedding=vector.tobytes(),
                thumbnail=jpeg.tobytes(),
            )
            session.add(row)
            session.flush()
            enrolled.append(EnrolledFace(row.id, external_id, vector.astype(np.float32)))
    index_sync.add_faces(ctx, gallery_id, [e.face_id for e in enrolled], np.stack([e.vector for e in enrolled]))
    return enrolled
