"""Forensic facial examination of a search's candidates (docs/examination.md): sequential unmasking, the FISWG
morphological checklist, the symmetric conclusion scale, blind verification and known-answer tests."""
