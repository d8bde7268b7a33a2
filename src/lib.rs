//! `vct`: train image classifiers from named templates. This facade re-exports the
//! workspace crates so an application can depend on one package.

pub use vct_arch as arch;
pub use vct_augment as augment;
pub use vct_data as data;
pub use vct_hparams as hparams;
pub use vct_kernels as kernels;
pub use vct_metrics as metrics;
pub use vct_optim as optim;
pub use vct_sched as sched;
pub use vct_train as train;
