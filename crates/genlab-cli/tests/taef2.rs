//! End to end with the pretrained TAEF2: `genlab reconstruct --autoencoder taef2` on a
//! folder of colour images (one with an alpha channel), a latent diffusion model trained one
//! step on TAEF2's latents (`--set ldm.autoencoder=taef2`) and sampled, `genlab data fetch
//! taef2` from a local copy, and the errors (grey data, sizes that are not multiples of 8, a
//! folder without the weights).
//!
//! Needs the weights: `$GENLAB_TAEF2_DIR` or the repository's shared folder
//! (`../shared/weights/taef2`); skipped, saying why, without them.

mod common;
use common::{fails_with, genlab, json, ok};

use std::path::{Path, PathBuf};

fn weights_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("GENLAB_TAEF2_DIR").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/weights/taef2")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|d| d.join("taef2_encoder.pth").is_file() && d.join("taef2_decoder.pth").is_file())
        .map(|d| d.canonicalize().unwrap())
}

/// Six 40x40 colour images (smooth gradients and discs), the last one RGBA with a
/// transparent border; read at 32x32.
fn colour_folder(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for k in 0..6u32 {
        let f = |x: u32, y: u32| -> [u8; 3] {
            let (dx, dy) = (x as i32 - 20, y as i32 - 20);
            let disc = dx * dx + dy * dy < (8 + 2 * k as i32).pow(2);
            [
                (x * 6 + k * 20) as u8,
                if disc { 230 } else { (y * 5) as u8 },
                (255 - x * 3 - k * 10) as u8,
            ]
        };
        if k == 5 {
            let img = image::RgbaImage::from_fn(40, 40, |x, y| {
                let [r, g, b] = f(x, y);
                let inside = (4..36).contains(&x) && (4..36).contains(&y);
                image::Rgba([r, g, b, if inside { 255 } else { 0 }])
            });
            img.save(dir.join(format!("img{k}.png"))).unwrap();
        } else {
            let img = image::RgbImage::from_fn(40, 40, |x, y| image::Rgb(f(x, y)));
            img.save(dir.join(format!("img{k}.png"))).unwrap();
        }
    }
}

#[test]
fn reconstruct_and_latent_diffusion_on_taef2() {
    let Some(w) = weights_dir() else {
        eprintln!("skipped: no TAEF2 weights in $GENLAB_TAEF2_DIR or ../shared/weights/taef2");
        return;
    };
    let ws = w.to_str().unwrap();
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    colour_folder(&d.join("imgs"));
    let out = ok(&genlab(
        &[
            "reconstruct",
            "--autoencoder",
            "taef2",
            "--weights",
            ws,
            "--input",
            "folder:imgs",
            "--image-size",
            "32",
            "--out",
            "rec",
        ],
        d,
    ));
    assert!(out.contains("PSNR") && out.contains("SSIM"), "{out}");
    for f in ["reconstructions.png", "reconstructions.npy", "compare.png"] {
        assert!(d.join("rec").join(f).is_file(), "{f}");
    }
    let m = json(&d.join("rec/metrics.json"));
    assert_eq!(m["n"], 6);
    assert_eq!(m["latent_shape"], serde_json::json!([32, 4, 4]));
    // Smooth synthetic images reconstruct well above noise level.
    let psnr = m["psnr"].as_f64().unwrap();
    assert!(psnr > 20.0, "PSNR {psnr}");

    // One LDM step on TAEF2's latents, then samples decoded by TAEF2.
    let weights_set = format!("ldm.weights={ws}");
    ok(&genlab(
        &[
            "train",
            "--model",
            "ldm",
            "--data",
            "folder:imgs",
            "--image-size",
            "32",
            "--set",
            "ldm.autoencoder=taef2",
            "--set",
            &weights_set,
            "--set",
            "ldm.ddpm.net.unet.base_channels=16",
            "--set",
            "ldm.ddpm.net.unet.heads=2",
            "--steps",
            "1",
            "--set",
            "train.batch_size=4",
            "--no-preview",
            "--out",
            "ldm",
        ],
        d,
    ));
    let cfg = json(&d.join("ldm/config.json"));
    assert_eq!(
        cfg["ldm"]["ddpm"]["data"]["shape"],
        serde_json::json!([32, 4, 4])
    );
    let s = cfg["ldm"]["scale_factor"].as_f64().unwrap();
    assert!(s.is_finite() && s > 0.1 && s < 10.0, "scale {s}");
    ok(&genlab(
        &[
            "sample", "--ckpt", "ldm", "--n", "2", "--steps", "2", "--out", "s.npy",
        ],
        d,
    ));
    let a = genlab_core::io::read_npy(&d.join("s.npy")).unwrap();
    assert_eq!(a.shape, vec![2, 3, 32, 32]);

    // Errors: grey images, a size TAEF2 cannot take, --weights without the files.
    fails_with(
        &genlab(
            &[
                "train",
                "--model",
                "ldm",
                "--data",
                "digits",
                "--set",
                "ldm.autoencoder=taef2",
                "--steps",
                "1",
                "--out",
                "bad",
            ],
            d,
        ),
        &["taef2", "RGB"],
    );
    fails_with(
        &genlab(
            &[
                "reconstruct",
                "--autoencoder",
                "taef2",
                "--weights",
                ws,
                "--input",
                "folder:imgs",
                "--image-size",
                "30",
            ],
            d,
        ),
        &["multiples of 8", "30x30"],
    );
    fails_with(
        &genlab(
            &[
                "reconstruct",
                "--autoencoder",
                "taef2",
                "--weights",
                "imgs",
                "--input",
                "folder:imgs",
            ],
            d,
        ),
        &["taef2_encoder.pth is not there"],
    );
}

#[test]
fn taef2_is_listed_as_fetchable() {
    let t = tempfile::tempdir().unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&ok(&genlab(&["list", "--json"], t.path()))).unwrap();
    let names: Vec<&str> = v["fetchable"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(names.contains(&"taef2"), "{names:?}");
}

#[test]
fn fetch_falls_back_to_a_local_copy_and_verifies_it() {
    let Some(w) = weights_dir() else {
        eprintln!("skipped: no TAEF2 weights in $GENLAB_TAEF2_DIR or ../shared/weights/taef2");
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // GitHub may or may not be reachable; either way the files end verified in the cache.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_genlab"))
        .args(["data", "fetch", "taef2"])
        .current_dir(d)
        .env("GENLAB_DATA", d)
        .env("GENLAB_TAEF2_DIR", &w)
        .output()
        .unwrap();
    let out = ok(&o);
    assert!(out.contains("taef2 is ready"), "{out}");
    let cache = d.join("weights/taef2");
    for f in ["taef2_encoder.pth", "taef2_decoder.pth"] {
        assert_eq!(
            std::fs::read(cache.join(f)).unwrap(),
            std::fs::read(w.join(f)).unwrap()
        );
    }
    // The cache is then found without --weights.
    colour_folder(&d.join("imgs"));
    ok(&genlab(
        &[
            "reconstruct",
            "--autoencoder",
            "taef2",
            "--input",
            "folder:imgs",
            "--image-size",
            "16",
            "--n",
            "2",
            "--out",
            "r.npy",
        ],
        d,
    ));
}
