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
`contact_sheet`. `writer.generate_synthetic_koin` is what `koin synth` runs.
"""
