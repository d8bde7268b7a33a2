//! Writes the tract tests' exports for `bench/onnxruntime_check.py`: for each
//! case, `NAME.onnx` and `NAME.json` (the input batch and vct's expected
//! outputs), so onnxruntime can be held to the same 1e-4 as tract.
//!
//! `cargo run -p vct-export --example onnxruntime_fixtures -- DIR [NAME_FILTER]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;

use vct_export::check::reference_outputs;
use vct_export::{write_onnx, OnnxOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: onnxruntime_fixtures DIR [NAME_FILTER]")?,
    );
    let filter = args.next().unwrap_or_default();
    std::fs::create_dir_all(&dir)?;
    for case in common::all_cases() {
        let name = case.name();
        if !name.contains(&filter) {
            continue;
        }
        let (model, meta, x) = case.prepare();
        let onnx = dir.join(format!("{name}.onnx"));
        write_onnx(&onnx, &model, &meta, &OnnxOptions { embeddings: true })?;
        let want = reference_outputs(&model, &meta, &x)?;
        let input: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let fixture = serde_json::json!({
            "model": format!("{name}.onnx"),
            "input_shape": want.input_shape,
            "input": input,
            "probabilities": want.probabilities,
            "embeddings": want.embeddings,
            "classes": model.num_classes(),
            "embedding_dim": model.out_dim(),
            "concepts": meta.concepts,
            "tolerance": 1e-4,
        });
        std::fs::write(dir.join(format!("{name}.json")), fixture.to_string())?;
        println!("{}", onnx.display());
    }
    Ok(())
}
