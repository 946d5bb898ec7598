"""The Space-ready `app.py` + `requirements.txt` that `koin push --with-demo` puts beside a model.

`app.py` runs `koin demo`'s app (`koin_hf.deploy.demo`) on the model it sits beside, or, copied
into a Gradio Space on its own, on the model repo it was pushed with (`$KOIN_DEMO_MODEL`
overrides both). `requirements.txt` names koin-hf with its `[demo]` extra. Both start with a
marker line: a file of that name without the marker is the user's own and is never replaced.
"""

from __future__ import annotations

from pathlib import Path

from koin_hf.errors import KoinError
from koin_hf.version import __version__

MARKER = "# Written by koin-hf (koin push --with-demo)"
APP_FILE = "app.py"
REQUIREMENTS_FILE = "requirements.txt"

_APP = '''{marker}; `python app.py` serves it on http://127.0.0.1:7860.
"""A browser demo of the koin-hf model {repo_id}: a photo in, the top-3 names out.

Beside the model files it runs on them; copied into a Hugging Face Space (SDK: gradio) with
requirements.txt it loads {repo_id} from the Hub (a private model needs an HF_TOKEN secret).
$KOIN_DEMO_MODEL names another model folder or Hub id.
"""

import os
from pathlib import Path

from koin_hf.deploy.demo import build_demo, serve

HERE = Path(__file__).resolve().parent
MODEL = os.environ.get("KOIN_DEMO_MODEL") or (
    str(HERE) if (HERE / "config.json").is_file() else "{repo_id}"
)

demo = build_demo(MODEL)

if __name__ == "__main__":
    serve(demo)  # $GRADIO_SERVER_NAME / $GRADIO_SERVER_PORT (a Space sets them), no share link
'''


def default_requirement() -> str:
    return f"koin-hf[demo]=={__version__}"


def render_app(repo_id: str) -> str:
    return _APP.format(marker=MARKER, repo_id=repo_id)


def render_requirements(requirement: str | None = None) -> str:
    line = (requirement or default_requirement()).strip()
    if not line or "\n" in line:
        raise KoinError(f"--demo_requirement must be one requirement line, got {requirement!r}.")
    return f"{MARKER}\n{line}\n"


def _check_not_users_own(folder: Path, name: str) -> None:
    path = folder / name
    if not path.exists():
        return
    try:
        first = path.read_text(encoding="utf-8").splitlines()[:1]
    except (OSError, UnicodeDecodeError):
        first = []
    if not first or not first[0].startswith(MARKER):
        raise KoinError(
            f"{path} exists and was not written by koin-hf; move it away to push with "
            "--with-demo (nothing was pushed)."
        )


def space_files(
    model_dir: str | Path, repo_id: str, requirement: str | None = None
) -> dict[str, bytes]:
    """{"app.py": ..., "requirements.txt": ...} for `repo_id`; KoinError if the folder holds
    files of those names that koin-hf did not write."""
    folder = Path(model_dir).expanduser()
    for name in (APP_FILE, REQUIREMENTS_FILE):
        _check_not_users_own(folder, name)
    return {
        APP_FILE: render_app(repo_id).encode("utf-8"),
        REQUIREMENTS_FILE: render_requirements(requirement).encode("utf-8"),
    }
