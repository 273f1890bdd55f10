//! Writes one example of every picture kind (and a page linking them) to
//! `/tmp/report-preview/` (or the directory given as the first argument), for eyeballing.
//!
//! Run with `cargo run --release -p genlab-report --example preview`.

use genlab_report::{
    density_png, image_grid, line_chart_svg, save_png, scatter_png, write_html, Block, Page,
    Result, Section, Series,
};

/// A tiny deterministic generator (xorshift) so the example needs no dependency.
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-12), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Two interleaved half circles ("moons") with Gaussian noise.
fn moons(n: usize, noise: f64, rng: &mut Noise) -> Vec<[f32; 2]> {
    (0..n)
        .map(|i| {
            let t = std::f64::consts::PI * rng.uniform();
            let (x, y) = if i % 2 == 0 {
                (t.cos(), t.sin())
            } else {
                (1.0 - t.cos(), 0.5 - t.sin())
            };
            [
                (x + noise * rng.normal()) as f32,
                (y + noise * rng.normal()) as f32,
            ]
        })
        .collect()
}

fn main() -> Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/report-preview".into());
    let dir = std::path::Path::new(&dir);
    let mut rng = Noise(0x9E37_79B9_7F4A_7C15);

    // Grey grid: 16 rings of growing radius, one image with NaN pixels.
    let (h, w) = (28, 28);
    let mut grey = Vec::with_capacity(16 * h * w);
    for k in 0..16 {
        let r = 3.0 + k as f32 * 0.6;
        for y in 0..h {
            for x in 0..w {
                let d = ((x as f32 - 13.5).powi(2) + (y as f32 - 13.5).powi(2)).sqrt();
                let v = (1.5 - (d - r).abs()).clamp(0.0, 1.0);
                grey.push(if k == 15 && x == y { f32::NAN } else { v });
            }
        }
    }
    save_png(
        &image_grid(&grey, 16, 1, h, w, 8, 3, 2)?,
        dir.join("grid_grey.png"),
    )?;

    // RGB grid: colour gradients, out-of-range values clamped.
    let (h, w) = (16, 16);
    let mut rgb = Vec::with_capacity(6 * 3 * h * w);
    for k in 0..6 {
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    let v = match c {
                        0 => x as f32 / 15.0,
                        1 => y as f32 / 15.0,
                        _ => k as f32 / 5.0 * 1.4 - 0.2,
                    };
                    rgb.push(v);
                }
            }
        }
    }
    save_png(
        &image_grid(&rgb, 6, 3, h, w, 3, 6, 3)?,
        dir.join("grid_rgb.png"),
    )?;

    // Scatter: model samples (a bit too noisy, plus an outlier) against the data.
    let reference = moons(2000, 0.05, &mut rng);
    let mut samples = moons(2000, 0.12, &mut rng);
    samples.push([40.0, -25.0]);
    save_png(
        &scatter_png(&samples, Some(&reference), 512, None)?,
        dir.join("scatter.png"),
    )?;

    // Density of a two-component Gaussian mixture on a 96 x 96 grid over [-3, 3]^2.
    let n = 96;
    let mut dens = Vec::with_capacity(n * n);
    for iy in 0..n {
        for ix in 0..n {
            let (x, y) = (
                -3.0 + 6.0 * (ix as f64 + 0.5) / n as f64,
                -3.0 + 6.0 * (iy as f64 + 0.5) / n as f64,
            );
            let a = (-((x - 1.0).powi(2) + (y - 1.0).powi(2)) / 0.5).exp();
            let b = 0.5 * (-((x + 1.0).powi(2) + (y + 0.5).powi(2)) / 1.2).exp();
            dens.push(a + b);
        }
    }
    save_png(&density_png(&dens, n, n, 384)?, dir.join("density.png"))?;

    // Loss curve: 3000 noisy steps on a log axis plus a short eval series.
    let loss: Vec<f64> = (0..3000)
        .map(|i| (2.0 * (-(i as f64) / 600.0).exp() + 0.04) * (1.0 + 0.35 * rng.normal()).abs())
        .collect();
    let eval = Series {
        name: "eval loss".into(),
        points: (0..=10)
            .map(|k| {
                let s = k as f64 * 300.0;
                (s, 2.0 * (-s / 600.0).exp() + 0.06)
            })
            .collect(),
    };
    let chart = line_chart_svg(
        "Training loss",
        "step",
        "loss",
        &[Series::from_values("train loss", &loss), eval],
        true,
    )?;
    genlab_report::write_atomic(&dir.join("loss.svg"), chart.as_bytes())?;
    let lin = line_chart_svg(
        "Accuracy <linear>",
        "epoch",
        "accuracy",
        &[Series {
            name: "val".into(),
            points: (0..=20)
                .map(|e| (e as f64, 1.0 - 0.9 * (-(e as f64) / 4.0).exp()))
                .collect(),
        }],
        false,
    )?;
    genlab_report::write_atomic(&dir.join("accuracy.svg"), lin.as_bytes())?;

    let page = Page {
        title: "genlab report preview".into(),
        sections: vec![
            Section {
                heading: "Samples".into(),
                blocks: vec![
                    Block::Text("Generated samples <b>(escaped)</b>.".into()),
                    Block::Image {
                        src: "grid_grey.png".into(),
                        caption: "grey grid".into(),
                    },
                    Block::Image {
                        src: "scatter.png".into(),
                        caption: "samples vs data".into(),
                    },
                    Block::Image {
                        src: "density.png".into(),
                        caption: "density".into(),
                    },
                ],
            },
            Section {
                heading: "Training".into(),
                blocks: vec![
                    Block::Svg(chart),
                    Block::Table {
                        header: vec!["metric".into(), "value".into()],
                        rows: vec![vec!["final loss".into(), format!("{:.4}", loss[2999])]],
                    },
                    Block::Code("lr = 1e-3\nsteps = 3000".into()),
                ],
            },
        ],
    };
    write_html(&page, dir.join("index.html"))?;
    println!("wrote previews to {}", dir.display());
    Ok(())
}
