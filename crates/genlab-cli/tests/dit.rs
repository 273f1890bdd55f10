//! End to end: a DiT denoiser chosen by name (`--set ddpm.net=dit...`), trained, sampled
//! through the sampler zoo with classifier-free guidance, and the bad inputs of issue 24
//! (an image side the patch does not divide, an unknown DiT size).

mod common;
use common::{fails_with, genlab, json, ok};

#[test]
fn dit_trains_and_samples_with_guidance() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(&genlab(
        &[
            "train",
            "--model",
            "ddpm",
            "--data",
            "digits",
            "--steps",
            "3",
            "--out",
            "run",
            "--class-conditional",
            "--quiet",
            "--no-preview",
            "--set",
            "ddpm.net=dit-xs/4",
            "--set",
            "ddpm.net.dit.depth=1",
            "--set",
            "ddpm.net.dit.width=32",
            "--set",
            "ddpm.timesteps=50",
            "--set",
            "train.batch_size=8",
        ],
        d,
    ));
    let cfg = json(&d.join("run/config.json"));
    assert_eq!(cfg["ddpm"]["net"]["dit"]["patch"], 4);
    assert_eq!(cfg["ddpm"]["net"]["dit"]["depth"], 1);
    for sampler in ["ddim", "dpm++2m"] {
        ok(&genlab(
            &[
                "sample",
                "--ckpt",
                "run",
                "--n",
                "4",
                "--steps",
                "3",
                "--sampler",
                sampler,
                "--class",
                "3",
                "--guidance",
                "2",
                "--out",
                "s.png",
            ],
            d,
        ));
        assert!(d.join("s.png").exists());
    }
    // Progressive distillation takes the DiT teacher as it takes a U-Net.
    ok(&genlab(
        &[
            "distill",
            "--teacher",
            "run",
            "--out",
            "distilled",
            "--from",
            "4",
            "--to",
            "2",
            "--steps-per-round",
            "2",
            "--quiet",
        ],
        d,
    ));
    assert!(d.join("distilled/steps-2/checkpoint.safetensors").exists());
}

#[test]
fn dit_refuses_a_patch_that_does_not_divide_the_image() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let o = genlab(
        &[
            "train",
            "--model",
            "ddpm",
            "--data",
            "digits",
            "--steps",
            "1",
            "--out",
            "run",
            "--set",
            "ddpm.net=dit-xs/3",
        ],
        d,
    );
    fails_with(&o, &["8x8", "3x3 patches", "1, 2, 4, 8"]);
    let o = genlab(
        &[
            "train",
            "--model",
            "ddpm",
            "--data",
            "digits",
            "--steps",
            "1",
            "--out",
            "run",
            "--set",
            "ddpm.net=dit-xl/2",
        ],
        d,
    );
    fails_with(&o, &["unknown size `xl`", "xs, s, b"]);
}

/// Writes `root/CLASS/CLIP/000k.png`: two classes of 4-frame 8x8 grey clips, a bright
/// square moving right (class a) or down (class b).
fn write_clips(root: &std::path::Path) {
    for (class, (dx, dy)) in [("a", (1usize, 0usize)), ("b", (0, 1))] {
        for clip in 0..3 {
            let dir = root.join(class).join(format!("clip{clip}"));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..4 {
                let mut img = image::GrayImage::new(8, 8);
                let (x0, y0) = (clip % 2 + dx * f, clip % 2 + dy * f);
                for y in y0..y0 + 3 {
                    for x in x0..x0 + 3 {
                        img.put_pixel(x as u32, y as u32, image::Luma([255]));
                    }
                }
                img.save(dir.join(format!("{f:04}.png"))).unwrap();
            }
        }
    }
}

#[test]
fn video_dit_trains_samples_gifs_and_extends_clips() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    write_clips(&d.join("clips"));
    ok(&genlab(
        &[
            "train",
            "--model",
            "ddpm",
            "--data",
            "video-folder:clips,frames=4",
            "--image-size",
            "8",
            "--channels",
            "1",
            "--class-conditional",
            "--steps",
            "2",
            "--out",
            "vrun",
            "--quiet",
            "--set",
            "ddpm.net.dit.depth=1",
            "--set",
            "ddpm.net.dit.width=32",
            "--set",
            "ddpm.net.dit.attention=\"factorised\"",
            "--set",
            "ddpm.timesteps=50",
            "--set",
            "train.batch_size=4",
        ],
        d,
    ));
    let cfg = json(&d.join("vrun/config.json"));
    assert_eq!(cfg["ddpm"]["net"]["dit"]["tubelet"], 2, "{cfg}");
    assert_eq!(
        cfg["ddpm"]["data"]["shape"],
        serde_json::json!([4, 1, 8, 8])
    );
    // Samples: .npy [N, T, C, H, W] with labels beside it, a filmstrip + GIF, a GIF.
    ok(&genlab(
        &[
            "sample",
            "--ckpt",
            "vrun",
            "--n",
            "2",
            "--steps",
            "2",
            "--class",
            "all",
            "--guidance",
            "2",
            "--out",
            "v.npy",
        ],
        d,
    ));
    let a = genlab_core::io::read_npy(&d.join("v.npy")).unwrap();
    assert_eq!(a.shape, vec![4, 4, 1, 8, 8]);
    assert!(d.join("v.labels.npy").exists());
    ok(&genlab(
        &[
            "sample", "--ckpt", "vrun", "--n", "3", "--steps", "2", "--out", "v.png",
        ],
        d,
    ));
    assert!(d.join("v.png").exists() && d.join("v.gif").exists());
    let gif = std::fs::read(d.join("v.gif")).unwrap();
    assert_eq!(&gif[..6], b"GIF89a");
    // Longer clips than the model's 4 frames: extended by inpainting along time.
    ok(&genlab(
        &[
            "sample",
            "--ckpt",
            "vrun",
            "--n",
            "2",
            "--steps",
            "2",
            "--frames",
            "7",
            "--context-frames",
            "2",
            "--extend-steps",
            "2",
            "--out",
            "long.npy",
        ],
        d,
    ));
    let a = genlab_core::io::read_npy(&d.join("long.npy")).unwrap();
    assert_eq!(a.shape, vec![2, 7, 1, 8, 8]);
    // Bad inputs: fewer frames than the model's, --frames on an image model, .gif of images.
    fails_with(
        &genlab(
            &[
                "sample", "--ckpt", "vrun", "--n", "1", "--frames", "3", "--out", "x.npy",
            ],
            d,
        ),
        &["clips of 4 frames", "4 or more"],
    );
    ok(&genlab(
        &[
            "train",
            "--model",
            "ddpm",
            "--data",
            "digits",
            "--steps",
            "1",
            "--out",
            "irun",
            "--quiet",
            "--no-preview",
            "--set",
            "ddpm.net=dit-xs/4",
            "--set",
            "ddpm.net.dit.depth=1",
        ],
        d,
    ));
    fails_with(
        &genlab(
            &[
                "sample", "--ckpt", "irun", "--n", "1", "--frames", "8", "--out", "x.npy",
            ],
            d,
        ),
        &["--frames is for video checkpoints", "[1, 8, 8]"],
    );
    fails_with(
        &genlab(
            &[
                "sample", "--ckpt", "irun", "--n", "1", "--steps", "1", "--out", "x.gif",
            ],
            d,
        ),
        &["a .gif is for video samples"],
    );
    // Image metrics on a video checkpoint point to video-eval.
    fails_with(
        &genlab(
            &["eval", "--real", "digits", "--fake", "vrun", "--n", "2"],
            d,
        ),
        &["video model", "genlab video-eval"],
    );
    // A video run refuses a single image to edit.
    let img = image::GrayImage::new(8, 8);
    img.save(d.join("one.png")).unwrap();
    let o = genlab(
        &[
            "inpaint", "--ckpt", "vrun", "--image", "one.png", "--mask", "left", "--out", "e.png",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
}
