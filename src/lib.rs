//! `vct`: train image classifiers from named templates. This facade re-exports
//! the workspace crates so an application can depend on one package.
//!
//! Training from Rust, on a folder of images (`root/<concept>/<image>`, or
//! `root/{train,val}/<concept>/<image>`, or a CSV/JSONL manifest):
//!
//! ```
//! use vct::hparams::{HyperParams, Template};
//! use vct::train::{config::RunConfig, run::{Progress, RunOptions}, session};
//!
//! # let tmp = tempfile::tempdir()?;
//! # let images = tmp.path().join("images");
//! # let cfg = vct::data::demo::DemoConfig { seed: 0, size: 40, train_per_class: 4, val_per_class: 2 };
//! # vct::data::demo::generate(&images, &cfg)?;
//! let hp = HyperParams::defaults(Template::InceptionV2)
//!     .with_override("image_size=32")?
//!     .with_override("num_epochs=1")?;
//! let mut opts = RunOptions::new(tmp.path().join("run"));
//! opts.progress = Progress::Quiet;
//! let summary = session::train(&RunConfig::new(hp, &images), opts)?;
//! println!("{}", vct::train::run::summary_text(&summary));
//!
//! // Later: load the run and predict.
//! let model = session::TrainedModel::load(&summary.out, &candle_core::Device::Cpu)?;
//! let prediction = model.predict_one(&images.join("val/circle/0000.png"), 3, false)?;
//! assert_eq!(prediction.concepts.len(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use vct_arch as arch;
pub use vct_augment as augment;
#[cfg(feature = "cli")]
pub use vct_cli as cli;
pub use vct_data as data;
pub use vct_export as export;
pub use vct_hparams as hparams;
pub use vct_hub as hub;
pub use vct_kernels as kernels;
pub use vct_metrics as metrics;
pub use vct_optim as optim;
pub use vct_sched as sched;
pub use vct_train as train;
