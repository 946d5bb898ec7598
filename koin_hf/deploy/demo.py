"""`koin demo MODEL`: a Gradio app, a photo (upload, webcam or clipboard) in, the top-3 names out.

The app classifies through `koin_hf.evaluation.predict.Predictor`, the code path of
`koin predict`: the uploaded file itself (Gradio hands over its path untouched, `image_mode=None`)
is checked against the pixel budget, decoded by koin-hf's decoder and ranked by
`pipeline("image-classification")`, so a photo gets the same names and scores in the browser as
from `koin predict` and the same pixels as in `koin evaluate`.

Face mode (`koin demo MODEL --faces`): `build_demo(..., faces=FUNCTION)` adds a second tab that
draws a box and the top name for every face in the photo. `FUNCTION(path)` returns a list of
`FaceResult`; `face_function(model)` builds it from `koin recognize`'s code path
(koin_hf.evaluation.recognize.FaceRecognizer: detector, alignment, names and the calibrated
"unknown" rule). Without it the app has one tab.

Gradio's analytics are turned off (`GRADIO_ANALYTICS_ENABLED=False`, unless you set it), the app
listens on 127.0.0.1 by default, and a public share link is made only when asked (`share=True`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from koin_hf.errors import KoinError
from koin_hf.run_record import RunRecord

TOP_K = 3
DEFAULT_HOST = "127.0.0.1"
# The element the top-k result lives in; the browser test reads the predicted name from it.
RESULT_ELEMENT_ID = "koin-top-k"
FACES_ELEMENT_ID = "koin-faces"
# A photo is a few megabytes; the pixel budget then bounds what decoding one can cost.
MAX_UPLOAD = "100mb"


@dataclass(frozen=True)
class FaceResult:
    """One face found in a photo: its box (left, top, right, bottom, in pixels) and top names."""

    box: tuple[int, int, int, int]
    ranked: Sequence[dict] = field(default_factory=list)  # [{"label", "score"}], best first


# A face recogniser for the face tab: an image file's path -> the faces in it.
FaceFunction = Callable[[str], Sequence[FaceResult]]


def face_function(
    model: str | Path,
    *,
    detector: str | None = None,
    device: str | None = None,
    max_megapixels: float | None = None,
    top_k: int = TOP_K,
) -> FaceFunction:
    """The face tab's function for `model`: `koin recognize`'s detector and names, loaded once."""
    from koin_hf.evaluation.recognize import FaceRecognizer
    from koin_hf.faces.detection import DEFAULT_DETECTOR

    recognizer = FaceRecognizer(
        model,
        detector=detector or DEFAULT_DETECTOR,
        device=device,
        max_megapixels=max_megapixels,
    )

    def faces(path: str) -> list[FaceResult]:
        found = recognizer(Path(path).name, recognizer.check(path), top_k)["faces"]
        return [
            FaceResult(tuple(round(v) for v in face["box"]), face["predictions"]) for face in found
        ]

    return faces


def import_gradio() -> Any:
    """gradio, with its analytics off; a one-line error naming the extra when it is missing."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError:
        raise KoinError("the demo needs Gradio: pip install 'koin-hf[demo]'") from None
    return gradio


def scores_by_name(ranked: Sequence[dict]) -> dict[str, float]:
    """pipeline()'s ranked dicts as the {name: score} mapping a gr.Label shows, best first."""
    return {str(item["label"]): float(item["score"]) for item in ranked}


def face_annotations(
    path: str, faces: Sequence[FaceResult]
) -> tuple[str, list[tuple[tuple[int, int, int, int], str]]]:
    """A gr.AnnotatedImage value: the photo and, per face, its box and `name (score)`."""
    boxes = []
    for face in faces:
        best = face.ranked[0] if face.ranked else None
        text = f"{best['label']} ({float(best['score']):.2f})" if best else "unknown"
        boxes.append((tuple(int(v) for v in face.box), text))
    return path, boxes


def build_demo(
    model: str | Path,
    *,
    top_k: int = TOP_K,
    faces: FaceFunction | None = None,
    device: str | None = None,
    max_megapixels: float | None = None,
    title: str | None = None,
) -> Any:
    """The Gradio Blocks app for `model` (loaded once, here); `.launch()` it or mount it."""
    gr = import_gradio()
    from koin_hf.evaluation.predict import Predictor

    if top_k < 1:
        raise KoinError(f"--top_k must be at least 1, got {top_k}.")
    predictor = Predictor(model, device=device, max_megapixels=max_megapixels)
    name = Path(str(model)).name if Path(str(model)).is_dir() else str(model)
    title = title or f"koin-hf: {name}"

    def classify(path: str | None) -> dict[str, float] | None:
        if not path:
            return None
        try:
            source = predictor.check(path)
            ranked = predictor([source], top_k=top_k, names=[Path(path).name])[0]
        except KoinError as err:
            raise gr.Error(str(err)) from None
        return scores_by_name(ranked)

    def find_faces(path: str | None):
        if not path:
            return None
        try:
            predictor.check(path)  # the same pixel budget as the whole-photo tab
            return face_annotations(path, faces(path))
        except KoinError as err:
            raise gr.Error(str(err)) from None

    note = ""
    if Path(str(model)).is_dir():
        record = RunRecord.load_if_present(model)
        if record is not None and record.is_synthetic:
            note = (
                " Trained on the embedded *synthetic* KoIn: drawn faces with invented names, "
                "no real person."
            )
    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(
            f"# {title}\nA photo in (upload, webcam or paste), the model's top-{top_k} names "
            f"out, decoded exactly as `koin predict` and `koin evaluate` decode it.{note}"
        )
        with gr.Tab("Whole photo"), gr.Row():
            photo = gr.Image(
                type="filepath",
                image_mode=None,  # hand over the file as uploaded: koin-hf decodes it
                sources=["upload", "webcam", "clipboard"],
                label="Photo",
            )
            result = gr.Label(num_top_classes=top_k, label="Who", elem_id=RESULT_ELEMENT_ID)
        photo.change(classify, inputs=photo, outputs=result)
        if faces is not None:
            with gr.Tab("Faces"), gr.Row():
                group = gr.Image(
                    type="filepath",
                    image_mode=None,
                    sources=["upload", "webcam", "clipboard"],
                    label="Photo",
                )
                found = gr.AnnotatedImage(label="Faces", elem_id=FACES_ELEMENT_ID)
            group.change(find_faces, inputs=group, outputs=found)
    return demo


def serve(
    demo: Any, *, host: str | None = None, port: int | None = None, share: bool = False
) -> None:
    """Serve a built app until interrupted (blocks): on `host` (default $GRADIO_SERVER_NAME, else
    127.0.0.1, this machine only) and `port` (default $GRADIO_SERVER_PORT, else Gradio's 7860
    or the next free one). A public share link only when `share` is True."""
    demo.queue(default_concurrency_limit=1)  # one model, one forward at a time
    demo.launch(
        server_name=host or os.environ.get("GRADIO_SERVER_NAME") or DEFAULT_HOST,
        server_port=port,
        share=bool(share),
        inbrowser=False,
        show_error=True,
        max_file_size=MAX_UPLOAD,
    )


def launch_demo(
    model: str | Path,
    *,
    host: str | None = None,
    port: int | None = None,
    share: bool = False,
    top_k: int = TOP_K,
    faces: FaceFunction | None = None,
    device: str | None = None,
    max_megapixels: float | None = None,
) -> None:
    """`koin demo`: build the app for `model` and serve it (see `serve`)."""
    demo = build_demo(model, top_k=top_k, faces=faces, device=device, max_megapixels=max_megapixels)
    serve(demo, host=host, port=port, share=share)
