"""Writes crates/genlab-data/assets/html5_entities.txt: the HTML5 named character references
that Python's `html.unescape` knows (`html.entities.html5`, from the WHATWG HTML standard),
used by the CLIP tokenizer's text cleaning (open_clip's `basic_clean` runs
`html.unescape(html.unescape(text))`; crates/genlab-data/src/tokenize/html_unescape.rs).

Usage:  .venv/bin/python scripts/reference/html_entities_table.py   (stdlib only)

Format: a header line starting with '#', then one line per entity:
    NAME<TAB>HEX[ HEX...]
NAME is the key of html.entities.html5 (with its ';' when it has one; the legacy names also
appear without it), HEX the code points of its replacement text.
"""
import html.entities
import pathlib
import sys

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/genlab-data/assets/html5_entities.txt"

lines = [f"# html.entities.html5 of Python {sys.version.split()[0]}: {len(html.entities.html5)} names"]
for name in sorted(html.entities.html5):
    value = html.entities.html5[name]
    lines.append(name + "\t" + " ".join(f"{ord(c):X}" for c in value))
OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
print(f"wrote {OUT} ({len(lines) - 1} names)")
