"""What the command lines share: every flag in both spellings (- or _ between its words), tables as text."""

from __future__ import annotations


def flag(name: str) -> tuple[str, ...]:
    """A --flag's option strings: as written and with - for _ or _ for - (--data-dir, --data_dir)."""
    words = name[2:]
    other = "--" + (words.replace("_", "-") if "_" in words else words.replace("-", "_"))
    return (name,) if other == name else (name, other)


def cell(value) -> str:
    """A table cell: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_table(rows: list[dict]) -> str:
    """Rows as aligned text columns."""
    columns = list(rows[0])
    cells = [[cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
