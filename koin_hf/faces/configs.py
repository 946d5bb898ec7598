"""The names of the face configs `koin prepare --faces` writes beside the whole-photo ones.

`normal` -> `normal-faces`, and so on for every case (hard, group, unknown). A model trained on
a face config is a face model: the open-set tools (calibrate, enroll, evaluate --open_set)
then work on face crops too. One place for the naming rule.
"""

from __future__ import annotations

FACE_SUFFIX = "-faces"


def is_face_config(config: str) -> bool:
    """Whether `config` holds face crops (`normal-faces`, ...)."""
    return config.endswith(FACE_SUFFIX)


def face_config(config: str) -> str:
    """The face-crop config of a whole-photo config: `hard` -> `hard-faces`."""
    return config if is_face_config(config) else f"{config}{FACE_SUFFIX}"


def like(config: str, base: str) -> str:
    """`base` (a whole-photo config name) in the same kind as `config`: face crops when
    `config` is a face config, whole photos otherwise."""
    return face_config(base) if is_face_config(config) else base
