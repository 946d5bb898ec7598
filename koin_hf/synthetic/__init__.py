"""The embedded synthetic KoIn: a generated stand-in for the real photos, in the raw KoIn layout.

No labelled face photos can be downloaded here, so the product's own runs and every test use a
dataset drawn with Pillow. It is built to make results mean something:

* identity lives only in the face (face shape, skin tone, hair style and colour, eyes, brows,
  nose, mouth, moles, freckles, glasses, facial hair); everything else (background, clutter,
  other people, colour cast, lighting, blur, noise, position, scale, pose, image size) is drawn
  from a per-photo random stream that never sees the label;
* hard cases put masks, hats or both over the parts a model trained on normal photos relies on;
* group photos place the labelled person among 2-5 random, non-class people.

Every photo is a pure function of (seed, subset, label, index), so output bytes do not depend on
the order or the number of worker processes.

The modules, from the bottom up: `basics` (types, colour and random helpers), `identity` (who a
person is, how they look in one photo, class names), `sprite`, `features` and `occluders` (drawing
a face in face units), `person` (a whole person, placed on a photo), `scene` (backgrounds,
lighting and photo layouts: `render_photo`), `writer` (the dataset on disk or in memory) and
`contact_sheet`. This package re-exports the public API of all of them.
"""

from koin_hf.synthetic.basics import RGB, Box
from koin_hf.synthetic.contact_sheet import contact_sheet
from koin_hf.synthetic.identity import (
    HAIR_STYLES,
    Identity,
    Look,
    class_identity,
    class_names,
    random_identity,
    random_look,
)
from koin_hf.synthetic.person import paste_person, render_person
from koin_hf.synthetic.scene import (
    PHONE_SIZE,
    SUBSETS,
    PhotoJob,
    SyntheticPhoto,
    photo_jobs,
    render_photo,
)
from koin_hf.synthetic.writer import (
    DEFAULT_COUNTS,
    generate_synthetic_koin,
    iter_photos,
    parse_image_size,
)

__all__ = [
    "DEFAULT_COUNTS",
    "HAIR_STYLES",
    "PHONE_SIZE",
    "RGB",
    "SUBSETS",
    "Box",
    "Identity",
    "Look",
    "PhotoJob",
    "SyntheticPhoto",
    "class_identity",
    "class_names",
    "contact_sheet",
    "generate_synthetic_koin",
    "iter_photos",
    "paste_person",
    "photo_jobs",
    "parse_image_size",
    "random_identity",
    "random_look",
    "render_person",
    "render_photo",
]
