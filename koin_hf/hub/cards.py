"""What both cards share: KoIn's references, Markdown and YAML escaping, templates, file writing.

Two rules keep hostile values (a celebrity name with `|`, a newline, `---` or `<script>`, a base
model path with quotes) from breaking a card:

* the YAML metadata block is built as a dict and written with `yaml.safe_dump`, never by string
  templating, and strings that span lines are forced into one-line double-quoted scalars, so no
  value can close the `---` block early;
* every value interpolated into the Markdown body is escaped by the Jinja environment's
  `finalize` hook (table pipes, backticks, emphasis, links, HTML, newlines). Only text this module
  builds itself is marked safe (`markupsafe.Markup`), e.g. the YAML block and the repo id inside the
  usage snippet, which is validated as a Hub id first.

The templates themselves are in model_cards/ (shipped as koin_hf.model_cards).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml
from markupsafe import Markup

from koin_hf.errors import KoinError
from koin_hf.folder_lock import give_umask_mode

PAPER_ARXIV_ID = "2310.09756"
PAPER_TITLE = "New Benchmarks for Asian Facial Recognition Tasks: Face Classification with Large Foundation Models"
KOIN_HOMEPAGE = "https://github.com/dukong1/KoIn_Benchmark_Dataset"
KOIN_LICENSE_NAME = "koin-academic-use"
KOIN_CITATION = f"""@misc{{koin2023,
  title         = {{{PAPER_TITLE}}},
  year          = {{2023}},
  eprint        = {{{PAPER_ARXIV_ID}}},
  archivePrefix = {{arXiv}},
  url           = {{https://arxiv.org/abs/{PAPER_ARXIV_ID}}}
}}"""

# Test sets of the benchmark, in the order the paper reports them; other eval sets follow.
BENCHMARK_SETS = ("normal", "hard", "group")
NOT_RECORDED = "not recorded"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?$")


# --- escaping -----------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~#])")


def escape_markdown(value: object) -> str:
    """One-line Markdown text that renders as the literal value, also inside a table cell.

    HTML is entity-escaped (so `<script>` shows as text), Markdown syntax characters are
    backslash-escaped (`|` would split a table cell, backticks open code, `[..](..)` makes links)
    and line breaks become spaces (a newline would end a table row or start a new block).
    """
    text = str(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return re.sub(r"[\r\n\t\f\v\u2028\u2029\x85]+", " ", text).strip()


def _finalize(value: object) -> object:
    """Jinja hook: escape every interpolated value unless this module marked it safe."""
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    return escape_markdown(value)


def is_hub_id(value: object) -> bool:
    """True for 'name' or 'namespace/name' spelled the way the Hub accepts."""
    if not isinstance(value, str) or not _HUB_ID.fullmatch(value):
        return False
    return not ("--" in value or ".." in value or value.endswith(".git"))


def names_hub_repo(value: object) -> bool:
    """A Hub id that is not also a local folder (training records either)."""
    return is_hub_id(value) and not Path(str(value)).expanduser().exists()


class _CardDumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings as one double-quoted line (escapes `\\n`)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if any(ch in value for ch in "\r\n\x85\u2028\u2029") or not value.isprintable():
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_CardDumper.add_representer(str, _represent_str)


def yaml_front_matter(metadata: Mapping[str, Any]) -> Markup:
    """The `---`-fenced YAML block, dumped (never templated) so values cannot escape it."""
    body = yaml.dump(
        dict(metadata),
        Dumper=_CardDumper,
        allow_unicode=True,
        sort_keys=False,
        width=10_000,
        default_flow_style=False,
    )
    return Markup(f"---\n{body}---\n")


# --- templates ----------------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        autoescape=False,  # Markdown, not HTML: `finalize` does the escaping
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env


def _load_template(name: str) -> str:
    return resources.files("koin_hf.model_cards").joinpath(name).read_text(encoding="utf-8")


def render(template: str, **context: Any) -> str:
    text = _environment().get_template(template).render(**context)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"


def atomic_write_text(path: Path, text: str) -> Path:
    """Write via a temp file in the same folder and rename, so a crash never leaves half a card."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        give_umask_mode(tmp)  # mkstemp's 0600 would hide the card from colleagues
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_json(path: Path, *, required: bool = False) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise KoinError(f"{path} is missing: is {path.parent} a trained model folder?")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise KoinError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise KoinError(f"{path} should hold a JSON object, not {type(data).__name__}")
    return data
