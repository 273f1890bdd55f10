//! Python's `html.unescape` (CPython `Lib/html/__init__.py`), which open_clip's text cleaning
//! runs twice: named references from the HTML5 table (`html.entities.html5`, written to
//! `assets/html5_entities.txt` by `scripts/reference/html_entities_table.py`), the longest
//! known prefix of an unknown name, numeric references with the HTML5 replacements of invalid
//! ones. The rules are the WHATWG HTML standard's "character reference state".

use std::collections::HashMap;
use std::sync::OnceLock;

/// The HTML5 entity table, `NAME<TAB>HEX[ HEX...]` per line (see the module header).
const ENTITIES: &str = include_str!("../../assets/html5_entities.txt");

/// Longest name in the reference regex `[^\t\n\f <&#;]{1,32}` (in characters).
const MAX_NAME_CHARS: usize = 32;

fn entities() -> &'static HashMap<&'static str, String> {
    static TABLE: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    TABLE.get_or_init(|| {
        ENTITIES
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (name, hex) = l.split_once('\t')?;
                let value: Option<String> = hex
                    .split(' ')
                    .map(|h| u32::from_str_radix(h, 16).ok().and_then(char::from_u32))
                    .collect();
                Some((name, value?))
            })
            .collect()
    })
}

/// CPython's `_invalid_charrefs`: numeric references the standard maps elsewhere.
fn invalid_charref(num: u32) -> Option<char> {
    Some(match num {
        0x00 => '\u{fffd}',
        0x0d => '\r',
        0x80 => '\u{20ac}',
        0x81 => '\u{81}',
        0x82 => '\u{201a}',
        0x83 => '\u{0192}',
        0x84 => '\u{201e}',
        0x85 => '\u{2026}',
        0x86 => '\u{2020}',
        0x87 => '\u{2021}',
        0x88 => '\u{02c6}',
        0x89 => '\u{2030}',
        0x8a => '\u{0160}',
        0x8b => '\u{2039}',
        0x8c => '\u{0152}',
        0x8d => '\u{8d}',
        0x8e => '\u{017d}',
        0x8f => '\u{8f}',
        0x90 => '\u{90}',
        0x91 => '\u{2018}',
        0x92 => '\u{2019}',
        0x93 => '\u{201c}',
        0x94 => '\u{201d}',
        0x95 => '\u{2022}',
        0x96 => '\u{2013}',
        0x97 => '\u{2014}',
        0x98 => '\u{02dc}',
        0x99 => '\u{2122}',
        0x9a => '\u{0161}',
        0x9b => '\u{203a}',
        0x9c => '\u{0153}',
        0x9d => '\u{9d}',
        0x9e => '\u{017e}',
        0x9f => '\u{0178}',
        _ => return None,
    })
}

/// CPython's `_invalid_codepoints`: numeric references that are dropped.
fn invalid_codepoint(num: u32) -> bool {
    matches!(num, 0x1..=0x8 | 0xb | 0xe..=0x1f | 0x7f..=0x9f | 0xfdd0..=0xfdef)
        || (num & 0xfffe) == 0xfffe
}

/// Replacement of a numeric reference whose digits are `digits` in `radix`.
fn numeric(digits: &str, radix: u32) -> String {
    // Python's int() has no overflow: anything past u32 is > 0x10FFFF, hence U+FFFD.
    let num = u32::from_str_radix(digits, radix).unwrap_or(u32::MAX);
    if let Some(c) = invalid_charref(num) {
        return c.to_string();
    }
    if (0xD800..=0xDFFF).contains(&num) || num > 0x10FFFF {
        return '\u{fffd}'.to_string();
    }
    if invalid_codepoint(num) {
        return String::new();
    }
    char::from_u32(num).map(String::from).unwrap_or_default()
}

/// Length in bytes of the reference body starting at `s` (after '&'), as the regex
/// `#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?` matches it, with its replacement.
fn reference(s: &str) -> Option<(usize, String)> {
    let b = s.as_bytes();
    if b.first() == Some(&b'#') {
        let (start, radix) = match b.get(1) {
            Some(b'x' | b'X') => (2, 16),
            _ => (1, 10),
        };
        let n = b[start..]
            .iter()
            .take_while(|c| {
                if radix == 16 {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                }
            })
            .count();
        if n == 0 {
            // "&#x" with no hex digits: the decimal branch failed on 'x' too.
            return None;
        }
        let end = start + n;
        let with_semi = end + usize::from(b.get(end) == Some(&b';'));
        return Some((with_semi, numeric(&s[start..end], radix)));
    }
    let mut end = 0;
    for (count, (i, c)) in s.char_indices().enumerate() {
        if count == MAX_NAME_CHARS
            || matches!(c, '\t' | '\n' | '\x0c' | ' ' | '<' | '&' | '#' | ';')
        {
            break;
        }
        end = i + c.len_utf8();
    }
    if end == 0 {
        return None;
    }
    let with_semi = end + usize::from(b.get(end) == Some(&b';'));
    let name = &s[..with_semi];
    let table = entities();
    if let Some(v) = table.get(name) {
        return Some((with_semi, v.clone()));
    }
    // The longest known prefix of at least two characters, the rest kept as it is.
    let cuts: Vec<usize> = name.char_indices().map(|(i, _)| i).skip(2).collect();
    for &cut in cuts.iter().rev() {
        if let Some(v) = table.get(&name[..cut]) {
            return Some((with_semi, format!("{v}{}", &name[cut..])));
        }
    }
    Some((with_semi, format!("&{name}")))
}

/// `html.unescape(s)` exactly as CPython 3.11 computes it.
pub fn html_unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let body = &rest[amp + 1..];
        match reference(body) {
            Some((len, replacement)) => {
                out.push_str(&replacement);
                rest = &body[len..];
            }
            None => {
                out.push('&');
                rest = body;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::html_unescape;

    /// Expected values are CPython 3.11's `html.unescape` outputs.
    #[test]
    fn matches_cpython_on_named_numeric_and_broken_references() {
        let cases = [
            ("no entities", "no entities"),
            ("a &amp; b", "a & b"),
            ("&lt;b&gt;", "<b>"),
            ("&amp;amp;", "&amp;"),
            ("caf&eacute;", "café"),
            ("&eacute", "é"),
            ("&ampfoo;", "&foo;"),
            ("&notit;", "¬it;"),
            ("&bogus;", "&bogus;"),
            ("&#65;&#x42;&#X43", "ABC"),
            ("&#0;", "\u{fffd}"),
            ("&#128;", "€"),
            ("&#1;x", "x"),
            ("&#xD800;", "\u{fffd}"),
            ("&#99999999999999999999;", "\u{fffd}"),
            ("&#x;", "&#x;"),
            ("& amp;", "& amp;"),
            ("&&amp;", "&&"),
            ("&NotEqualTilde;", "\u{2242}\u{338}"),
        ];
        for (input, want) in cases {
            assert_eq!(html_unescape(input), want, "{input:?}");
        }
    }
}
