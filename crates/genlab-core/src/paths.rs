//! Where genlab keeps downloaded data and weights.

use std::ffi::OsString;
use std::path::PathBuf;

/// The root of genlab's data: `$GENLAB_DATA` if set, else `$XDG_CACHE_HOME/genlab`, else
/// `$HOME/.cache/genlab`, else `genlab` under the system temporary folder. Datasets live
/// below it (`mnist/`), pretrained weights in `weights/`.
pub fn data_dir() -> PathBuf {
    data_dir_from(
        std::env::var_os("GENLAB_DATA"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// Where pretrained weights are looked for: `data_dir()/weights`.
pub fn weights_dir() -> PathBuf {
    data_dir().join("weights")
}

/// [`data_dir`] from explicit variable values (empty values count as unset).
pub fn data_dir_from(
    genlab: Option<OsString>,
    xdg_cache: Option<OsString>,
    home: Option<OsString>,
) -> PathBuf {
    let set = |v: Option<OsString>| v.filter(|s| !s.is_empty()).map(PathBuf::from);
    if let Some(d) = set(genlab) {
        return d;
    }
    if let Some(d) = set(xdg_cache) {
        return d.join("genlab");
    }
    if let Some(h) = set(home) {
        return h.join(".cache").join("genlab");
    }
    std::env::temp_dir().join("genlab")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_precedence() {
        let s = |v: &str| Some(OsString::from(v));
        assert_eq!(
            data_dir_from(s("/d"), s("/x"), s("/h")),
            PathBuf::from("/d")
        );
        assert_eq!(
            data_dir_from(s(""), s("/x"), s("/h")),
            PathBuf::from("/x/genlab")
        );
        assert_eq!(
            data_dir_from(None, None, s("/h")),
            PathBuf::from("/h/.cache/genlab")
        );
        assert!(data_dir_from(None, None, None).ends_with("genlab"));
    }
}
