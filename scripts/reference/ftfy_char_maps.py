"""Writes crates/genlab-data/assets/ftfy_char_maps.txt: the three character tables of ftfy
6.3.1 that genlab's CLIP text cleaning applies in place of `ftfy.fix_text`
(crates/genlab-data/src/tokenize/clip_bpe.rs): `fix_latin_ligatures` (LIGATURES),
`fix_character_width` (WIDTH_MAP: full-width and half-width forms to their NFKC
equivalents) and `remove_control_chars` (CONTROL_CHARS: deleted).

Usage:  .venv/bin/python scripts/reference/ftfy_char_maps.py     (needs ftfy==6.3.1)

Format: a header line starting with '#', then one line per character:
    KIND<TAB>HEX<TAB>[HEX HEX...]
KIND is `ligature`, `width` or `control`; the third field is the replacement's code points
(empty for a deleted control character).
"""
import pathlib

import ftfy
from ftfy import chardata

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/genlab-data/assets/ftfy_char_maps.txt"

lines = [f"# ftfy {ftfy.__version__}: LIGATURES, WIDTH_MAP, CONTROL_CHARS"]
for kind, table in [("ligature", chardata.LIGATURES), ("width", chardata.WIDTH_MAP),
                    ("control", chardata.CONTROL_CHARS)]:
    for cp in sorted(table):
        value = table[cp] or ""
        lines.append(f"{kind}\t{cp:X}\t" + " ".join(f"{ord(c):X}" for c in value))
OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
print(f"wrote {OUT} ({len(lines) - 1} characters)")
