"""Writing a benchmark's Markdown report: every timed round listed, the file written and printed."""

from __future__ import annotations

from pathlib import Path


def round_lines(rows: list[dict], key: str, unit: str) -> list[str]:
    """'Every round' as a list, one line per thread count and variant: ``row[key]`` maps a variant to its rounds."""
    lines = ["", f"Every round ({unit}):", ""]
    for row in rows:
        for name, values in row[key].items():
            lines.append(f"- {row['threads']} thread(s), {name}: {', '.join(f'{v:.1f}' for v in values)}")
    return lines


def write_markdown(path: Path, lines: list[str]) -> None:
    """Write ``lines`` to ``path`` (its folder made if needed) and print them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())
