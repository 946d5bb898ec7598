"""`koin evaluate --faces`: the face path scored beside the whole-photo numbers.

Reads the face configs `koin prepare --faces` writes (koin_hf.faces.prepare): every face crop is
scored by the same model (`score_config`), then rows are joined back to their photos by
`image_id`. Group photos are scored the way a user asks about one:

- any_face_top1: is the labelled person the top-1 name of at least one face in the photo?
  (More faces means more chances: with n faces and C classes, guessing scores
  1 - (1 - 1/C)^n, so read it beside the best-face numbers.)
- best_face_top1 / best_face_top3: take the face the model is most sure of (highest softmax
  score); is the label its top-1 / among its top-3?
- labelled_face_top1 / _top3: the face that carries the label, when the dataset knows which
  (`labelled`, from koin synth's records); None for real photos.

Every rate is over all photos of the whole-photo config: a photo where no face was found is a
miss, never dropped. normal-faces and hard-faces (one face per portrait) get top-1/top-3 the
same way, over all photos.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from koin_hf.evaluation.metrics import top_k_credit
from koin_hf.evaluation.scoring import ImageScorer, ScoredConfig, score_config
from koin_hf.faces.configs import FACE_SUFFIX


def _credit(scored: ScoredConfig, k: int) -> np.ndarray:
    """Per-face top-k credit, ties shared as in every koin evaluate number (metrics.py)."""
    k = min(k, scored.logits.shape[1])
    return top_k_credit(scored.logits, scored.references, k)


def _by_photo(scored: ScoredConfig) -> dict[str, list[int]]:
    photos: dict[str, list[int]] = {}
    for row, image_id in enumerate(scored.image_ids):
        photos.setdefault(image_id, []).append(row)
    return photos


def portrait_metrics(scored: ScoredConfig, photos: int) -> dict:
    """top-1/top-3 of the one face per portrait, over all `photos` (no face: a miss)."""
    rows = _by_photo(scored)
    first = [indices[0] for indices in rows.values()]
    credit = {k: _credit(scored, k)[first].sum() if first else 0.0 for k in (1, 3)}
    return {
        "photos": photos,
        "photos_with_face": len(rows),
        "top1_accuracy": float(credit[1] / photos) if photos else None,
        "top3_accuracy": float(credit[3] / photos) if photos else None,
    }


def group_metrics(scored: ScoredConfig, labelled: list | None, photos: int) -> dict:
    """The group-photo questions of the module docstring, over all `photos`."""
    probabilities = scored.probabilities()
    top1, top3 = _credit(scored, 1), _credit(scored, 3)
    rows = _by_photo(scored)
    any_top1 = best_top1 = best_top3 = 0.0
    lab_top1 = lab_top3 = 0.0
    known = labelled is not None and all(value is not None for value in labelled)
    for indices in rows.values():
        any_top1 += max(top1[i] for i in indices)
        best = max(indices, key=lambda i: float(probabilities[i].max()))
        best_top1 += top1[best]
        best_top3 += top3[best]
        if known:
            mine = [i for i in indices if labelled[i]]
            if mine:
                lab_top1 += top1[mine[0]]
                lab_top3 += top3[mine[0]]
    faces_per_photo = [len(v) for v in rows.values()]

    def rate(count: float) -> float | None:
        return float(count / photos) if photos else None

    return {
        "photos": photos,
        "photos_with_face": len(rows),
        "faces": int(sum(faces_per_photo)),
        "mean_faces_per_photo": float(np.mean(faces_per_photo)) if faces_per_photo else 0.0,
        "any_face_top1": rate(any_top1),
        "best_face_top1": rate(best_top1),
        "best_face_top3": rate(best_top3),
        "labelled_face_top1": rate(lab_top1) if known else None,
        "labelled_face_top3": rate(lab_top3) if known else None,
    }


def evaluate_faces(
    scorer: ImageScorer,
    face_sets: Mapping[str, object],
    whole_photos: Mapping[str, int],
    batch_size: int = 32,
    num_workers: int = 0,
    max_megapixels: float | None = None,
) -> dict:
    """{"normal-faces": {...}, "hard-faces": {...}, "group-faces": {...}} for the face configs
    present; `whole_photos` is the photo count of each whole-photo config (the denominators)."""
    results: dict = {}
    for config, data in face_sets.items():
        base = config.removesuffix(FACE_SUFFIX)
        scored = score_config(scorer, config, data, batch_size, num_workers, max_megapixels)
        photos = whole_photos.get(base, len(set(scored.image_ids)))
        if base == "group":
            labelled = data["labelled"] if "labelled" in data.column_names else None
            results[config] = group_metrics(scored, labelled, photos)
        else:
            results[config] = portrait_metrics(scored, photos)
    return results


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def face_rows(results: Mapping) -> list[list[str]]:
    """Rows of the side-by-side table: test set, photos, whole-photo top-1/top-3, face-path
    top-1/top-3, photos with a face found."""
    configs, faces = results["configs"], results.get("faces") or {}
    rows = []
    for config, face in faces.items():
        base = config.removesuffix(FACE_SUFFIX)
        whole = configs.get(base, {})
        found = f"{face['photos_with_face']}/{face['photos']}"
        if base == "group":
            rows.append(
                [
                    "group (most confident face)",
                    str(face["photos"]),
                    _pct(whole.get("top1_accuracy")),
                    _pct(whole.get("top3_accuracy")),
                    _pct(face["best_face_top1"]),
                    _pct(face["best_face_top3"]),
                    found,
                ]
            )
            rows.append(
                [
                    "group (person among the faces)",
                    str(face["photos"]),
                    "",
                    "",
                    _pct(face["any_face_top1"]),
                    "",
                    found,
                ]  # fmt: skip
            )
            if face.get("labelled_face_top1") is not None:
                rows.append(
                    [
                        "group (the labelled face)",
                        str(face["photos"]),
                        "",
                        "",
                        _pct(face["labelled_face_top1"]),
                        _pct(face["labelled_face_top3"]),
                        found,
                    ]  # fmt: skip
                )
        else:
            rows.append(
                [
                    base,
                    str(face["photos"]),
                    _pct(whole.get("top1_accuracy")),
                    _pct(whole.get("top3_accuracy")),
                    _pct(face["top1_accuracy"]),
                    _pct(face["top3_accuracy"]),
                    found,
                ]
            )
    return rows


FACE_HEADER = ["test set", "photos", "whole top-1", "whole top-3", "faces top-1", "faces top-3",
               "photos with a face"]  # fmt: skip


def face_summary(results: Mapping) -> list[str]:
    """The console lines of `koin evaluate --faces`."""
    if not results.get("faces"):
        return []
    lines = ["", "face path (koin evaluate --faces; docs/FACES.md):"]
    for row in face_rows(results):
        lines.append(f"  {row[0]:<32} whole {row[2]:>8}  faces top-1 {row[4]:>8}  ({row[6]})")
    return lines
