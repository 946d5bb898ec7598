"""Faces: find faces in a photo (detection), crop them upright (alignment), and turn a raw KoIn
folder into per-face dataset configs (prepare). See docs/FACES.md."""
