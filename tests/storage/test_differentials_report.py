"""The transparency report includes the latest demographic-differentials run on file, as measured."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import numpy as np

from facetrail.context import AppContext
from facetrail.evaluation.differentials import group_differentials, read_manifest
from facetrail.evaluation.embedding import EmbeddingSet
from facetrail.reports.transparency import collect_report, write_report


def _differentials_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    people, paths, vectors = {}, [], []
    for i in range(4):
        centre = rng.normal(0, 1, 8)
        people[f"P{i}"] = [f"P{i}/P{i}_{k:04d}.jpg" for k in (1, 2)]
        for path in people[f"P{i}"]:
            v = centre + rng.normal(0, 0.1, 8)
            paths.append(path)
            vectors.append(v / np.linalg.norm(v))
    emb = EmbeddingSet("m@1", "d@1", paths, np.array(vectors, np.float32), np.ones(len(paths), np.int32))
    manifest_path = tmp_path / "groups.csv"
    manifest_path.write_text("image,skin_tone\n" + "".join(f"{p},{'I-III' if p < 'P2' else 'IV-VI'}\n" for p in paths))
    report = group_differentials(people, emb, read_manifest(manifest_path, paths), 0.4, "test")
    report["manifest"] = str(manifest_path)
    out = tmp_path / "groups-m.json"
    out.write_text(json.dumps(report))
    return out


def test_transparency_report_includes_the_differentials_on_file(ctx: AppContext, tmp_path: Path) -> None:
    today = dt.datetime.now(dt.UTC).date()
    missing = collect_report(ctx, str(today), str(today), actor="cli:clerk").section("demographic_differentials")
    assert missing.recorded is False and "Not on file" in missing.text

    ctx.settings.accuracy.differentials_report = str(_differentials_file(tmp_path))
    report = collect_report(ctx, str(today), str(today), actor="cli:clerk")
    section = report.section("demographic_differentials")
    assert section.recorded and {row[1] for row in section.rows} == {"I-III", "IV-VI"}
    assert "groups.csv" in section.text and "m@1" in section.text
    write_report(report, tmp_path / "report")
    with open(tmp_path / "report" / "demographic_differentials.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:3] == ["attribute", "group", "images"] and len(rows) == 3

    (tmp_path / "broken.json").write_text("{not json")
    ctx.settings.accuracy.differentials_report = str(tmp_path / "broken.json")
    broken = collect_report(ctx, str(today), str(today), actor="cli:clerk").section("demographic_differentials")
    assert broken.recorded is False and "Not readable" in broken.text
