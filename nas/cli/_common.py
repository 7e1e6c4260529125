"""Arguments several sub-command groups share."""

from __future__ import annotations


def add_store_arg(p, what: str = "") -> None:
    """``--store URL``: the measurement store (SQLite file or database URL)."""
    p.add_argument(
        "--store",
        metavar="URL",
        help=f"{what}measurement store: a database URL or SQLite file (default: $LOWFORMER_NAS_STORE, else "
             "$LOWFORMER_NAS_HOME/store.sqlite)",
    )
