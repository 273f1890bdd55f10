//! End to end: a first-stage autoencoder on the 8x8 digits, its reconstructions and
//! metrics, a latent diffusion model on its latents, sampling, and the bad inputs of
//! issue 22 (missing autoencoder, another image size, bad outputs, text-to-image on a run
//! without text).

mod common;
use common::{fails_with, genlab, ok};

fn npy_shape(p: &std::path::Path) -> (Vec<usize>, Vec<f32>) {
    let a = genlab_core::io::read_npy(p).unwrap();
    (a.shape, a.data)
}

#[test]
fn autoencoder_reconstruct_eval_and_latent_diffusion() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(&genlab(
        &[
            "train",
            "--model",
            "autoencoder",
            "--data",
            "digits",
            "--steps",
            "6",
            "--set",
            "autoencoder.channels=[8,16]",
            "--set",
            "autoencoder.groups=4",
            "--set",
            "train.batch_size=8",
            "--no-preview",
            "--out",
            "ae",
        ],
        d,
    ));
    // Reconstructions: the first 5 digits, N x C x H x W in [0, 1].
    let out = ok(&genlab(
        &[
            "reconstruct",
            "--autoencoder",
            "ae",
            "--input",
            "digits",
            "--n",
            "5",
            "--out",
            "r.npy",
        ],
        d,
    ));
    assert!(out.contains("PSNR"), "{out}");
    let (shape, data) = npy_shape(&d.join("r.npy"));
    assert_eq!(shape, vec![5, 1, 8, 8]);
    assert!(data.iter().all(|v| (0.0..=1.0).contains(v)));
    // The same images from a .npy give the same reconstructions.
    ok(&genlab(
        &[
            "reconstruct",
            "--autoencoder",
            "ae",
            "--input",
            "r.npy",
            "--out",
            "r2.png",
        ],
        d,
    ));
    assert!(d.join("r2.png").exists() && d.join("r2-compare.png").exists());
    let out = ok(&genlab(
        &[
            "eval",
            "--ckpt",
            "ae",
            "--metrics",
            "psnr",
            "--data",
            "digits",
            "--n",
            "20",
            "--json",
            "e.json",
        ],
        d,
    ));
    assert!(out.contains("PSNR"), "{out}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("e.json")).unwrap()).unwrap();
    assert!(j["report"]["psnr"].as_f64().unwrap().is_finite());

    // Latent diffusion on the autoencoder's 4x4x4 latents, then samples decoded to 8x8.
    ok(&genlab(
        &[
            "train",
            "--model",
            "ldm",
            "--data",
            "digits",
            "--steps",
            "4",
            "--set",
            "ldm.autoencoder=ae",
            "--set",
            "ldm.ddpm.net.unet.base_channels=16",
            "--set",
            "ldm.ddpm.net.unet.num_res_blocks=1",
            "--set",
            "train.batch_size=8",
            "--no-preview",
            "--out",
            "ldm",
        ],
        d,
    ));
    let cfg = std::fs::read_to_string(d.join("ldm/config.json")).unwrap();
    assert!(cfg.contains("scale_factor"), "{cfg}");
    ok(&genlab(
        &[
            "sample", "--ckpt", "ldm", "--n", "3", "--steps", "3", "--out", "s.npy",
        ],
        d,
    ));
    let (shape, data) = npy_shape(&d.join("s.npy"));
    assert_eq!(shape, vec![3, 1, 8, 8]);
    assert!(data.iter().all(|v| (0.0..=1.0).contains(v)));

    // Editing in latent space: SDEdit and inpainting (the known pixels come back exactly).
    ok(&genlab(
        &[
            "img2img",
            "--ckpt",
            "ldm",
            "--from",
            "digits",
            "--n",
            "2",
            "--strength",
            "0.5",
            "--steps",
            "4",
            "--out",
            "i2i.png",
        ],
        d,
    ));
    assert!(d.join("i2i.png").exists());
    ok(&genlab(
        &[
            "inpaint",
            "--ckpt",
            "ldm",
            "--from",
            "digits",
            "--n",
            "2",
            "--mask",
            "right-half",
            "--steps",
            "4",
            "--method",
            "replace",
            "--out",
            "inp.png",
        ],
        d,
    ));
    assert!(d.join("inp.png").exists());

    // Bad input, one clear message each.
    fails_with(
        &genlab(
            &[
                "train", "--model", "ldm", "--data", "digits", "--steps", "1", "--out", "x1",
            ],
            d,
        ),
        &["ldm.autoencoder", "required"],
    );
    fails_with(
        &genlab(
            &[
                "train",
                "--model",
                "ldm",
                "--data",
                "digits",
                "--steps",
                "1",
                "--set",
                "ldm.autoencoder=nowhere",
                "--out",
                "x2",
            ],
            d,
        ),
        &["no checkpoint at nowhere", "autoencoder"],
    );
    // An autoencoder of another image size (digits are 8x8, these PNGs are read at 12x12).
    let folder = d.join("pngs");
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..4 {
        let px: Vec<f32> = (0..12 * 12)
            .map(|k| ((k + i) as f32 * 0.3).sin() * 0.5 + 0.5)
            .collect();
        let img = genlab_report::image_grid(&px, 1, 1, 12, 12, 1, 1, 0).unwrap();
        genlab_report::save_png(&img, folder.join(format!("{i}.png"))).unwrap();
    }
    let spec = format!("folder:{}", folder.display());
    fails_with(
        &genlab(
            &[
                "train",
                "--model",
                "ldm",
                "--data",
                &spec,
                "--image-size",
                "12",
                "--channels",
                "1",
                "--steps",
                "1",
                "--set",
                "ldm.autoencoder=ae",
                "--out",
                "x3",
            ],
            d,
        ),
        &[
            "trained on `digits` images of shape [1, 8, 8]",
            "[1, 12, 12]",
            "any_image_size",
        ],
    );
    // SSIM's 11x11 window does not fit 8x8 images; outputs must be .npy or .png.
    fails_with(
        &genlab(
            &[
                "eval",
                "--ckpt",
                "ae",
                "--metrics",
                "ssim",
                "--data",
                "digits",
            ],
            d,
        ),
        &["11 pixels"],
    );
    fails_with(
        &genlab(
            &[
                "eval",
                "--ckpt",
                "ae",
                "--metrics",
                "psnr,fid",
                "--data",
                "digits",
            ],
            d,
        ),
        &["cannot be combined"],
    );
    fails_with(
        &genlab(
            &[
                "reconstruct",
                "--autoencoder",
                "ae",
                "--input",
                "digits",
                "--out",
                "r.txt",
            ],
            d,
        ),
        &[".npy", ".png"],
    );
    fails_with(
        &genlab(
            &[
                "reconstruct",
                "--autoencoder",
                "ldm",
                "--input",
                "digits",
                "--out",
                "r.npy",
            ],
            d,
        ),
        &["holds a `ldm` model, not an autoencoder"],
    );
    // Text-to-image needs a run trained with text.
    fails_with(
        &genlab(
            &[
                "txt2img", "--ckpt", "ldm", "--prompt", "a 3", "--out", "t.png",
            ],
            d,
        ),
        &["without text conditioning"],
    );
    // Text conditioning needs the cross-attention U-Net.
    fails_with(
        &genlab(
            &[
                "train",
                "--model",
                "ldm",
                "--data",
                "digits",
                "--steps",
                "1",
                "--set",
                "ldm.autoencoder=ae",
                "--set",
                "ldm.text={encoder=\"minilm\", max_tokens=8, captions=\"digits\"}",
                "--out",
                "x4",
            ],
            d,
        ),
        &["cond-unet"],
    );
}
