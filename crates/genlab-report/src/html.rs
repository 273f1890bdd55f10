//! Single-file HTML report pages: headed sections of text, images, inline SVG charts,
//! tables and preformatted code, with inline CSS and no external resources.
//!
//! All text (title, headings, paragraphs, captions, table cells, code) is HTML-escaped.
//! [`Block::Svg`] is inserted verbatim and must come from a trusted generator such as
//! [`line_chart_svg`](crate::line_chart_svg). Images are linked by relative path and shown
//! with `image-rendering: pixelated` so small samples stay crisp when scaled up.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::error::Result;
use crate::escape::escape_markup;

/// A report page: a title and its sections, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub title: String,
    pub sections: Vec<Section>,
}

/// One headed section of a page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Section {
    pub heading: String,
    pub blocks: Vec<Block>,
}

/// One piece of content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Block {
    /// Plain text, escaped; blank lines separate paragraphs.
    Text(String),
    /// An image by path relative to the page, with a caption.
    Image { src: String, caption: String },
    /// Inline SVG markup, inserted verbatim (trusted input only).
    Svg(String),
    /// A table: header cells and rows of cells, all escaped.
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// Preformatted text (logs, configs), escaped.
    Code(String),
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;\
max-width:1000px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45;background:#fff}\
h1{font-size:1.7em;border-bottom:2px solid #ddd;padding-bottom:.3em}\
h2{font-size:1.3em;margin-top:2em;border-bottom:1px solid #eee;padding-bottom:.2em}\
nav ul{padding-left:1.2em}\
figure{margin:1em 0;display:inline-block;vertical-align:top;max-width:100%}\
figure img{image-rendering:pixelated;image-rendering:crisp-edges;max-width:100%;\
height:auto;border:1px solid #ddd}\
figcaption{font-size:.9em;color:#555;margin-top:.3em}\
.svg{max-width:100%;overflow-x:auto}.svg svg{max-width:100%;height:auto}\
table{border-collapse:collapse;margin:1em 0;font-size:.95em}\
th,td{border:1px solid #ddd;padding:.3em .7em;text-align:left}\
th{background:#f5f5f5}tr:nth-child(even) td{background:#fafafa}\
pre{background:#f6f8fa;border:1px solid #e1e4e8;padding:.8em;overflow-x:auto;\
font-size:.9em;line-height:1.35}";

/// Appends the markup of one block.
fn render_block(out: &mut String, block: &Block) {
    match block {
        Block::Text(text) => {
            let paragraphs = text.split("\n\n").map(str::trim).filter(|p| !p.is_empty());
            for p in paragraphs {
                let _ = writeln!(out, "<p>{}</p>", escape_markup(p));
            }
        }
        Block::Image { src, caption } => {
            let _ = writeln!(
                out,
                "<figure><img src=\"{}\" alt=\"{}\" loading=\"lazy\"><figcaption>{}</figcaption></figure>",
                escape_markup(src),
                escape_markup(caption),
                escape_markup(caption)
            );
        }
        Block::Svg(svg) => {
            let _ = writeln!(out, "<div class=\"svg\">{svg}</div>");
        }
        Block::Table { header, rows } => {
            out.push_str("<table>\n");
            if !header.is_empty() {
                out.push_str("<thead><tr>");
                for h in header {
                    let _ = write!(out, "<th>{}</th>", escape_markup(h));
                }
                out.push_str("</tr></thead>\n");
            }
            out.push_str("<tbody>\n");
            for row in rows {
                out.push_str("<tr>");
                for cell in row {
                    let _ = write!(out, "<td>{}</td>", escape_markup(cell));
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</tbody></table>\n");
        }
        Block::Code(code) => {
            let _ = writeln!(out, "<pre><code>{}</code></pre>", escape_markup(code));
        }
    }
}

/// Renders `page` as a complete, self-contained HTML document.
pub fn render_html(page: &Page) -> String {
    let mut out = String::new();
    let title = escape_markup(&page.title);
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>"
    );
    if page.sections.len() > 1 {
        out.push_str("<nav><ul>\n");
        for (i, s) in page.sections.iter().enumerate() {
            let _ = writeln!(
                out,
                "<li><a href=\"#s{}\">{}</a></li>",
                i + 1,
                escape_markup(&s.heading)
            );
        }
        out.push_str("</ul></nav>\n");
    }
    for (i, s) in page.sections.iter().enumerate() {
        let _ = writeln!(
            out,
            "<section id=\"s{}\">\n<h2>{}</h2>",
            i + 1,
            escape_markup(&s.heading)
        );
        for block in &s.blocks {
            render_block(&mut out, block);
        }
        out.push_str("</section>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// Renders `page` and writes it to `path` atomically (parent directories created).
pub fn write_html(page: &Page, path: impl AsRef<Path>) -> Result<()> {
    write_atomic(path.as_ref(), render_html(page).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(blocks: Vec<Block>) -> Page {
        Page {
            title: "Run <1>".into(),
            sections: vec![
                Section {
                    heading: "Samples & loss".into(),
                    blocks,
                },
                Section {
                    heading: "Config".into(),
                    blocks: vec![Block::Code("lr = 1e-3 <b>".into())],
                },
            ],
        }
    }

    #[test]
    fn text_is_escaped() {
        let html = render_html(&page(vec![
            Block::Text("<script>alert('x')</script>\n\nsecond".into()),
            Block::Image {
                src: "samples/\"x\".png".into(),
                caption: "<i>samples</i>".into(),
            },
            Block::Table {
                header: vec!["metric".into(), "<v>".into()],
                rows: vec![vec!["fid".into(), "1 < 2".into()]],
            },
        ]));
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("<p>second</p>"));
        assert!(html.contains("<title>Run &lt;1&gt;</title>"));
        assert!(html.contains("Samples &amp; loss"));
        assert!(html.contains("src=\"samples/&quot;x&quot;.png\""));
        assert!(!html.contains("<i>samples"));
        assert!(html.contains("<th>&lt;v&gt;</th>") && html.contains("<td>1 &lt; 2</td>"));
        assert!(html.contains("lr = 1e-3 &lt;b&gt;"));
        assert!(html.contains("image-rendering:pixelated"));
        assert!(html.contains("href=\"#s2\"") && html.contains("id=\"s2\""));
    }

    #[test]
    fn svg_is_inline_and_file_is_written() {
        let p = page(vec![Block::Svg("<svg><path d=\"M0 0\"/></svg>".into())]);
        let html = render_html(&p);
        assert!(html.contains("<div class=\"svg\"><svg><path d=\"M0 0\"/></svg></div>"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report").join("index.html");
        write_html(&p, &path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), html);
    }

    #[test]
    fn page_round_trips_through_json() {
        let p = page(vec![Block::Text("hi".into())]);
        let json = serde_json::to_string(&p).unwrap();
        let back: Page = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }
}
