//! `genlab embed-text --model NAME TEXT...`: embeddings of texts from a pretrained frozen
//! text encoder (`genlab list` shows them), printed or written as an `[N, D]` .npy array.

use std::path::PathBuf;

use candle_core::Device;
use clap::Args;

#[derive(Args)]
pub struct EmbedTextArgs {
    /// The text encoder (see `genlab list`).
    #[arg(long, default_value = "minilm")]
    model: String,
    /// Write the embeddings as an f32 `[N, D]` .npy array instead of printing them.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The texts, one embedding each (an empty text is valid).
    #[arg(required = true)]
    texts: Vec<String>,
}

pub fn run(a: EmbedTextArgs, device: &Device) -> anyhow::Result<()> {
    let encoder = genlab_train::text_encoders::open_text_encoder(&a.model, device)?;
    let texts: Vec<&str> = a.texts.iter().map(String::as_str).collect();
    let out = encoder.embed(&texts)?;
    for (i, cut) in out.truncated.iter().enumerate() {
        if *cut {
            eprintln!(
                "warning: text {} ({}) is longer than {} tokens; {} embeds its first {} only",
                i + 1,
                short(texts[i]),
                encoder.max_tokens(),
                a.model,
                encoder.max_tokens()
            );
        }
    }
    let rows = out.embeddings.to_vec2::<f32>()?;
    match a.out {
        Some(path) => {
            let flat: Vec<f32> = rows.iter().flatten().copied().collect();
            genlab_core::io::write_npy(&path, &[rows.len(), encoder.dim()], &flat)?;
            println!(
                "{} embeddings of width {} written to {}",
                rows.len(),
                encoder.dim(),
                path.display()
            );
        }
        None => {
            for (t, r) in texts.iter().zip(&rows) {
                let head: Vec<String> = r.iter().take(6).map(|v| format!("{v:+.5}")).collect();
                let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt();
                println!(
                    "{}: [{}, ...] (width {}, norm {norm:.4})",
                    short(t),
                    head.join(", "),
                    r.len()
                );
            }
        }
    }
    Ok(())
}

/// A text quoted for messages, its first 60 characters.
fn short(t: &str) -> String {
    let head: String = t.chars().take(60).collect();
    if head.len() < t.len() {
        format!("{head:?}...")
    } else {
        format!("{t:?}")
    }
}
