//! Captions of an image folder: a `captions.jsonl` beside the images, or the class
//! sub-folder names.
//!
//! **`captions.jsonl`** (in the folder's root): one JSON object per line,
//! `{"file": "relative/path.png", "caption": "..."}`, `file` relative to the root with `/`
//! separators (a leading `./` is allowed) and written as the folder lists it (the case of
//! the name matters). Blank lines are skipped. Every image of the folder needs exactly one
//! line, and every line an image: a line that is not such an object (another field, a
//! missing one, a caption that is not a string), an empty or blank caption, a file named
//! twice, a file that is not one of the folder's images, and images without a line are
//! each one error naming `captions.jsonl` and, where it applies, the line number.
//!
//! **Sub-folder names** (no `captions.jsonl`, images in class sub-folders): each image's
//! caption is its class name made readable ([`readable_class_name`]: `_` and `-` become
//! spaces, `golden_retriever` reads `golden retriever`), the bare name without a template:
//! the folder's author chose the words, and the zero-shot prompts of such a folder are the
//! same names, so training and evaluation agree without guessing a wording ("a photo of
//! ...") the images may not fit.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use genlab_core::{Error, Result};

/// The captions file an image folder may hold in its root.
pub const CAPTIONS_FILE: &str = "captions.jsonl";
/// Image names listed in the error about images without a caption.
const MISSING_SHOWN: usize = 5;

/// One line of `captions.jsonl`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    file: String,
    caption: String,
}

/// A class sub-folder name as words: `_` and `-` to spaces, runs of spaces to one, trimmed
/// (the raw name when nothing is left).
pub fn readable_class_name(name: &str) -> String {
    let words: Vec<&str> = name
        .split(['_', '-', ' '])
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        name.to_string()
    } else {
        words.join(" ")
    }
}

/// `path` relative to `root` as `a/b.png` (components joined with `/`).
fn relative_key(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    key_of(rel)
}

fn key_of(rel: &Path) -> String {
    rel.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Reads `root/captions.jsonl` when it exists: the caption of each of `images` (files
/// under `root`, in order), `None` when there is no such file.
pub fn read_captions_file(root: &Path, images: &[PathBuf]) -> Result<Option<Vec<String>>> {
    let path = root.join(CAPTIONS_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("reading", &path, e))?;
    let keys: Vec<String> = images.iter().map(|p| relative_key(root, p)).collect();
    let index: HashMap<&str, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    // (caption, line number) of each image.
    let mut found: Vec<Option<(String, usize)>> = vec![None; images.len()];
    let shown = path.display();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let malformed = |e: &dyn std::fmt::Display| {
            Error::Data(format!(
                "{shown}, line {line_no}: expected a JSON object {{\"file\": \"relative/path.png\", \
                 \"caption\": \"...\"}} and nothing else: {e}"
            ))
        };
        let value: serde_json::Value = serde_json::from_str(raw).map_err(|e| malformed(&e))?;
        if !value.is_object() {
            return Err(malformed(&"found another JSON value"));
        }
        let line: Line = serde_json::from_value(value).map_err(|e| malformed(&e))?;
        let key = key_of(Path::new(&line.file));
        let Some(&i) = index.get(key.as_str()) else {
            let why = if root.join(&line.file).is_file() {
                "is not one of the folder's images (hidden, not .png/.jpg/.jpeg, or outside \
                 the layout: images directly in the folder, or one level of class sub-folders)"
            } else {
                "does not exist"
            };
            return Err(Error::Data(format!(
                "{shown}, line {line_no}: unknown image `{}`: {why}",
                line.file
            )));
        };
        if line.caption.trim().is_empty() {
            return Err(Error::Data(format!(
                "{shown}, line {line_no}: the caption of `{}` is empty",
                line.file
            )));
        }
        if let Some((_, first)) = &found[i] {
            return Err(Error::Data(format!(
                "{shown}, line {line_no}: `{}` already has a caption (line {first}); give each \
                 image one line",
                line.file
            )));
        }
        found[i] = Some((line.caption, line_no));
    }
    let missing: Vec<&str> = found
        .iter()
        .zip(&keys)
        .filter(|(f, _)| f.is_none())
        .map(|(_, k)| k.as_str())
        .collect();
    if !missing.is_empty() {
        let more = if missing.len() > MISSING_SHOWN {
            ", ..."
        } else {
            ""
        };
        return Err(Error::Data(format!(
            "{shown}: {} of the folder's {} images have no caption: {}{more}",
            missing.len(),
            images.len(),
            missing[..missing.len().min(MISSING_SHOWN)].join(", ")
        )));
    }
    Ok(Some(found.into_iter().flatten().map(|(c, _)| c).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_read_as_words() {
        assert_eq!(readable_class_name("golden_retriever"), "golden retriever");
        assert_eq!(readable_class_name("t-shirt"), "t shirt");
        assert_eq!(readable_class_name("__a--b  c_"), "a b c");
        assert_eq!(readable_class_name("cat"), "cat");
        assert_eq!(readable_class_name("___"), "___");
    }

    #[test]
    fn keys_are_slash_separated_relative_paths() {
        let root = Path::new("/data/set");
        assert_eq!(
            relative_key(root, &root.join("cat").join("a.png")),
            "cat/a.png"
        );
        assert_eq!(key_of(Path::new("./cat/a.png")), "cat/a.png");
        assert_eq!(key_of(Path::new("a.png")), "a.png");
    }
}
