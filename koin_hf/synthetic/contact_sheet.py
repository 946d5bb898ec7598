"""The contact sheet (docs/synthetic_contact_sheet.png): a few photos of each identity at a glance."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageDraw

from koin_hf.synthetic.identity import class_names
from koin_hf.synthetic.scene import PhotoJob, render_photo


def contact_sheet(
    path: str | os.PathLike,
    *,
    seed: int = 0,
    num_identities: int = 5,
    normal_per_row: int = 4,
    hard_per_row: int = 3,
    thumb_height: int = 150,
) -> Path:
    """Save a PNG grid: one row per identity with normal, hard and one group photo."""
    from PIL import ImageFont

    names = class_names(num_identities, seed)
    font = ImageFont.load_default(size=max(10, thumb_height // 11))
    rows = []
    for label in range(num_identities):
        jobs = [PhotoJob(seed, "train", label, i) for i in range(normal_per_row)]
        jobs += [PhotoJob(seed, "hard", label, i) for i in range(hard_per_row)]
        jobs.append(PhotoJob(seed, "group", label, 0))
        thumbs = []
        for job in jobs:
            photo = render_photo(job)
            image = photo.image.copy()
            if job.subset == "group":  # show who the label is
                ImageDraw.Draw(image).rectangle(photo.face_box, outline=(255, 230, 0), width=2)
            scale = thumb_height / image.height
            thumbs.append(image.resize((round(image.width * scale), thumb_height), Image.LANCZOS))
        rows.append((names[label], thumbs))
    gap, label_h = 4, thumb_height // 7
    width = max(sum(t.width for t in thumbs) + gap * (len(thumbs) + 1) for _, thumbs in rows)
    height = len(rows) * (thumb_height + label_h + gap) + gap
    sheet = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    y = gap
    for name, thumbs in rows:
        draw.text(
            (gap, y),
            f"{name}: normal x{normal_per_row} | hard x{hard_per_row} | group",
            fill=(20, 20, 20),
            font=font,
        )
        x = gap
        for thumb in thumbs:
            sheet.paste(thumb, (x, y + label_h))
            x += thumb.width + gap
        y += thumb_height + label_h + gap
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # 256 colours keep the committed PNG small; it is for eyes, not for training.
    sheet.quantize(256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out
