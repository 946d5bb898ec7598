"""`python -m koin_hf.synthetic --contact_sheet PATH`: redraw the contact sheet."""

from __future__ import annotations

from collections.abc import Sequence

from koin_hf.flags import KoinArgumentParser
from koin_hf.synthetic.contact_sheet import contact_sheet


def _main(argv: Sequence[str] | None = None) -> int:
    parser = KoinArgumentParser(description="Synthetic KoIn helpers (see `koin synth`).")
    parser.add_argument(
        "--contact_sheet", metavar="PNG", required=True, help="write a contact sheet"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_identities", type=int, default=5)
    args = parser.parse_args(argv)
    print(contact_sheet(args.contact_sheet, seed=args.seed, num_identities=args.num_identities))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
