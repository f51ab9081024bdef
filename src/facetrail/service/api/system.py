"""Health and version: no authentication, reveals nothing."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

import facetrail

router = APIRouter(tags=["system"])


class Health(BaseModel):
    status: str
    version: str


@router.get("/health", response_model=Health, summary="Liveness check")
def health() -> Health:
    return Health(status="ok", version=facetrail.__version__)
