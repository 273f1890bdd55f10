//! The tokenizers against their upstream implementations: CLIP's BPE against open_clip 3.3.0
//! (`scripts/reference/clip_tokenizer_fixture.py`), WordPiece against HuggingFace
//! `tokenizers` (`scripts/reference/wordpiece_fixture.py`). Every id must be equal.

use genlab_data::tokenize::{ClipTokenizer, WordPieceTokenizer};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/tokenize/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn clip_tokens_equal_open_clip_on_every_fixture_string() {
    let fx = fixture("clip_tokenizer.json");
    assert_eq!(
        fx["vocab_sha256"].as_str().unwrap(),
        genlab_data::tokenize::clip_bpe::VOCAB_SHA256
    );
    let context = fx["context"].as_u64().unwrap() as usize;
    let tok = ClipTokenizer::new().unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    let mut n_truncated = 0;
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["tokens"]);
        assert_eq!(tok.encode(text), ids(&case["encode"]), "encode({text:?})");
        let got = tok.encode_padded(text, context).unwrap();
        assert_eq!(got.ids.len(), context);
        assert_eq!(&got.ids[..want.len()], &want[..], "tokenize({text:?})");
        assert!(
            got.ids[want.len()..].iter().all(|&i| i == 0),
            "padding of {text:?}"
        );
        assert_eq!(got.eot_index, want.len() - 1);
        assert_eq!(got.ids[got.eot_index], ClipTokenizer::EOT);
        let n_text = ids(&case["encode"]).len();
        assert_eq!(got.truncated, n_text + 2 > context, "{text:?}");
        n_truncated += usize::from(got.truncated);
    }
    // The fixture covers cut texts (the long ones) and exact fits (75 words).
    assert!(n_truncated >= 3, "{n_truncated}");
    let batch: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let enc = tok.encode_batch(&batch, context).unwrap();
    for (e, c) in enc.iter().zip(cases) {
        let want = ids(&c["tokens"]);
        assert_eq!(&e.ids[..want.len()], &want[..]);
    }
}

/// A larger fixture outside the repository (`clip_tokenizer_fixture.py --random N --out F`),
/// compared when `GENLAB_CLIP_EXTRA_FIXTURE=F` is set.
#[test]
fn clip_tokens_equal_open_clip_on_an_extra_fixture_if_given() {
    let Ok(path) = std::env::var("GENLAB_CLIP_EXTRA_FIXTURE") else {
        eprintln!("skipped: GENLAB_CLIP_EXTRA_FIXTURE not set");
        return;
    };
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let context = fx["context"].as_u64().unwrap() as usize;
    let tok = ClipTokenizer::new().unwrap();
    let cases = fx["cases"].as_array().unwrap();
    let mut bad = 0;
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["tokens"]);
        let got = tok.encode_padded(text, context).unwrap();
        if tok.encode(text) != ids(&case["encode"]) || got.ids[..want.len()] != want[..] {
            bad += 1;
            eprintln!("differs: {text:?}");
        }
    }
    eprintln!("{bad} of {} strings differ", cases.len());
    assert_eq!(bad, 0);
}

#[test]
fn wordpiece_ids_equal_huggingface_tokenizers_on_every_fixture_string() {
    let fx = fixture("wordpiece.json");
    let dir = format!("{}/tests/fixtures/tokenize", env!("CARGO_MANIFEST_DIR"));
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 30);
    for case in cases {
        let file = case["tokenizer"].as_str().unwrap();
        let tok =
            WordPieceTokenizer::from_file(std::path::Path::new(&format!("{dir}/{file}"))).unwrap();
        let text = case["text"].as_str().unwrap();
        let e = tok.encode(text, None).unwrap();
        assert_eq!(e.ids, ids(&case["ids"]), "{file}: {text:?}");
        assert_eq!(e.type_ids, ids(&case["type_ids"]), "{file}: {text:?}");
        assert_eq!(
            e.attention_mask,
            ids(&case["attention_mask"]),
            "{file}: {text:?}"
        );
    }
}
