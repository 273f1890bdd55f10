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
            "train", "--model", "ddpm", "--data", "digits", "--steps", "3", "--out", "run",
            "--class-conditional", "--quiet", "--no-preview",
            "--set", "ddpm.net=dit-xs/4",
            "--set", "ddpm.net.dit.depth=1",
            "--set", "ddpm.net.dit.width=32",
            "--set", "ddpm.timesteps=50",
            "--set", "train.batch_size=8",
        ],
        d,
    ));
    let cfg = json(&d.join("run/config.json"));
    assert_eq!(cfg["ddpm"]["net"]["dit"]["patch"], 4);
    assert_eq!(cfg["ddpm"]["net"]["dit"]["depth"], 1);
    for sampler in ["ddim", "dpm++2m"] {
        ok(&genlab(
            &[
                "sample", "--ckpt", "run", "--n", "4", "--steps", "3", "--sampler", sampler,
                "--class", "3", "--guidance", "2", "--out", "s.png",
            ],
            d,
        ));
        assert!(d.join("s.png").exists());
    }
}

#[test]
fn dit_refuses_a_patch_that_does_not_divide_the_image() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let o = genlab(
        &[
            "train", "--model", "ddpm", "--data", "digits", "--steps", "1", "--out", "run",
            "--set", "ddpm.net=dit-xs/3",
        ],
        d,
    );
    fails_with(&o, &["8x8", "3x3 patches", "1, 2, 4, 8"]);
    let o = genlab(
        &[
            "train", "--model", "ddpm", "--data", "digits", "--steps", "1", "--out", "run",
            "--set", "ddpm.net=dit-xl/2",
        ],
        d,
    );
    fails_with(&o, &["unknown size `xl`", "xs, s, b"]);
}
