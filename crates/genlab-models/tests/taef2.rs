//! TAEF2 against PyTorch: the real pretrained weights, loaded with genlab's own
//! PyTorch-zip reader, give the latents and reconstructions that
//! scripts/reference/taef2_fixture.py recorded (the same networks written independently in
//! PyTorch from the key layout) on two 64x64 photos and a 32x48 crop.
//!
//! The weights come from `$GENLAB_TAEF2_DIR`, else the repository's shared folder
//! (`../shared/weights/taef2`), else the genlab cache after `genlab data fetch taef2`; the
//! tests that need them are skipped, saying why, when none of these has them.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use genlab_models::autoencoder::taef2::{self, Taef2};

/// Largest absolute difference allowed between genlab's and PyTorch's latents and
/// reconstructions (both float32 from the same float16 weights; only summation order
/// differs).
const PARITY_ATOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/taef2")
        .join(name)
}

fn npy(name: &str) -> Tensor {
    let a = genlab_core::io::read_npy(&fixture(name)).unwrap();
    Tensor::from_vec(a.data, a.shape.as_slice(), &Device::Cpu).unwrap()
}

/// Where the TAEF2 weights are, if anywhere.
fn weights_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("GENLAB_TAEF2_DIR").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/weights/taef2")),
        Some(genlab_core::paths::weights_dir().join("taef2")),
    ];
    candidates.into_iter().flatten().find(|d| {
        d.join(taef2::TAEF2_ENCODER_FILE).is_file() && d.join(taef2::TAEF2_DECODER_FILE).is_file()
    })
}

fn load() -> Option<Taef2> {
    let Some(dir) = weights_dir() else {
        eprintln!(
            "skipped: no TAEF2 weights in $GENLAB_TAEF2_DIR, ../shared/weights/taef2 or the \
             genlab cache (`genlab data fetch taef2`)"
        );
        return None;
    };
    Some(Taef2::load_dir(&dir, &Device::Cpu).unwrap())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn latents_and_reconstructions_match_pytorch() {
    let Some(ae) = load() else { return };
    for tag in ["64", "32x48"] {
        let x = npy(&format!("in{tag}.npy"));
        let want_z = npy(&format!("lat{tag}.npy"));
        let want_y = npy(&format!("dec{tag}.npy"));
        let z = ae.encode(&x).unwrap();
        let dz = max_abs_diff(&z, &want_z);
        assert!(dz <= PARITY_ATOL, "{tag}: latents differ by {dz}");
        // The decoder on PyTorch's latents (isolates the decoder) and on ours.
        let dy = max_abs_diff(&ae.decode_raw(&want_z).unwrap(), &want_y);
        assert!(dy <= PARITY_ATOL, "{tag}: decoder output differs by {dy}");
        let dr = max_abs_diff(&ae.decode_raw(&z).unwrap(), &want_y);
        assert!(dr <= PARITY_ATOL, "{tag}: reconstruction differs by {dr}");
        eprintln!("{tag}: max |dz| {dz:.2e}, |dy| {dy:.2e}, |d recon| {dr:.2e}");
    }
}

#[test]
fn real_photos_are_reconstructed_closely() {
    let Some(ae) = load() else { return };
    // Not a parity check: the PSNR a correct network reaches (a wrong layout gives noise,
    // well under 15 dB). The fixture's PyTorch PSNR on these two photos is 26.2 dB.
    let x = npy("in64.npy");
    let y = ae.reconstruct(&x).unwrap();
    let (a, b): (Vec<f32>, Vec<f32>) = (
        x.flatten_all().unwrap().to_vec1().unwrap(),
        y.flatten_all().unwrap().to_vec1().unwrap(),
    );
    let per = a.len() / 2;
    for i in 0..2 {
        let mse: f64 = (0..per)
            .map(|j| (a[i * per + j] as f64 - b[i * per + j] as f64).powi(2))
            .sum::<f64>()
            / per as f64;
        let psnr = -10.0 * mse.log10();
        assert!(psnr > 22.0, "photo {i}: PSNR {psnr:.2} dB");
    }
}

#[test]
fn a_checkpoint_with_other_keys_is_refused_with_the_keys_listed() {
    let Some(dir) = weights_dir() else {
        eprintln!("skipped: no TAEF2 weights (see weights_dir)");
        return;
    };
    // The decoder file given as the encoder: every key differs in some way.
    let e = Taef2::load(
        &dir.join(taef2::TAEF2_DECODER_FILE),
        &dir.join(taef2::TAEF2_DECODER_FILE),
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("does not have the TAEF2 layout"), "{e}");
    assert!(
        e.contains("missing keys: ") && e.contains("unexpected keys: "),
        "{e}"
    );
    assert!(e.contains("taef2_decoder.pth"), "{e}");
    let e = Taef2::load_dir(Path::new("/nonexistent-taef2"), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("taef2_encoder.pth") && e.contains("does not exist"),
        "{e}"
    );
}
