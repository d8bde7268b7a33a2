//! Read and validate a hyperparameter file with vct-hparams alone:
//!
//! ```sh
//! cargo run --example params -- FILE [TEMPLATE]
//! ```
//!
//! FILE is `.json`, `.yaml`/`.yml` or `.toml`: `{"template": ..., "params": {...}}`,
//! or a bare params object when TEMPLATE is given. Keys left out take their
//! defaults. Every mistake is reported (key, value, allowed range) and the exit
//! status is 1; a valid file is printed in full, defaults filled in.

use std::path::Path;
use std::process::ExitCode;

use vct_hparams::{Format, HyperParams, Template};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(file) = args.first() else {
        eprintln!("usage: params FILE [TEMPLATE]");
        return ExitCode::from(2);
    };
    let template = match args.get(1).map(|t| t.parse::<Template>()).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match HyperParams::load(Path::new(file), template) {
        Ok(hp) => {
            println!("{file}: valid {} hyperparameters", hp.template());
            println!(
                "batch size {}, {} epochs, images {}px",
                hp.batch_size(),
                hp.num_epochs(),
                hp.image_size()
            );
            print!("{}", hp.to_string_format(Format::Json));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
