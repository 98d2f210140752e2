"""Print the README's table of datasets and models from the registry.

    python tools/datasets_table.py > /tmp/table.md   # then paste between the README's markers

tests/test_repo.py checks that the README holds exactly this table, so the list of
entries, their licences and the chapters that use them cannot drift from the registry.
"""

from __future__ import annotations

from pathlib import Path


def table() -> str:
    from dlbook.data import catalogue

    book = Path(__file__).resolve().parents[1] / "book"
    lines = [
        "| entry | what | licence | profiles | used in |",
        "|---|---|---|---|---|",
    ]
    for r in catalogue(book):
        used = ", ".join(f"`{c.removeprefix('book/')}`" for c in r["chapters"]) or "—"
        lines.append(
            f"| `{r['name']}` | {r['title']} | {r['licence']} | {r['profiles']} | {used} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
