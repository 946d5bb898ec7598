"""Model and dataset cards: Jinja templates filled with the values a run actually produced.

Two rules keep hostile values (a celebrity name with `|`, a newline, `---` or `<script>`, a base
model path with quotes) from breaking a card:

* the YAML metadata block is built as a dict and written with `yaml.safe_dump`, never by string
  templating, and strings that span lines are forced into one-line double-quoted scalars, so no
  value can close the `---` block early;
* every value interpolated into the Markdown body is escaped by the Jinja environment's
  `finalize` hook (table pipes, backticks, emphasis, links, HTML, newlines). Only text this module
  builds itself is marked safe (`markupsafe.Markup`), e.g. the YAML block and the repo id inside the
  usage snippet, which is validated as a Hub id first.

Modules: `common` (KoIn's references, escaping, templates, atomic writes), `model_card`,
`dataset_card`. The templates themselves are in model_cards/ (shipped as koin_hf.model_cards).
"""

from koin_hf.cards.common import atomic_write_text, escape_markdown, is_hub_id, yaml_front_matter
from koin_hf.cards.dataset_card import (
    dataset_card_metadata,
    read_card_header,
    render_dataset_card,
    write_dataset_card,
)
from koin_hf.cards.model_card import (
    model_card_metadata,
    read_top_k_metrics,
    render_model_card,
    write_model_card,
)

__all__ = [
    "atomic_write_text",
    "dataset_card_metadata",
    "escape_markdown",
    "is_hub_id",
    "model_card_metadata",
    "read_card_header",
    "read_top_k_metrics",
    "render_dataset_card",
    "render_model_card",
    "write_dataset_card",
    "write_model_card",
    "yaml_front_matter",
]
