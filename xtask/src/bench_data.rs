//! `cargo xtask bench data`: images/s of the data pipeline on real JPEGs —
//! decode → resize shorter side 256 → random crop 224 → random flip → normalise →
//! NCHW tensor — through the `vct_data::Loader` (rayon pool, prefetch queue), plus
//! a single-thread breakdown per stage. PyTorch's number for the same pipeline
//! (PIL + torchvision, one process) is in `../shared/perf/ANCHORS.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use vct_augment::{
    decode_file, item_rng, write_chw, DecodeOptions, Normalize, Pipeline, RandomCrop, RandomFlip,
    Resize, Transform,
};
use vct_data::{Dataset, Loader, LoaderConfig};

/// PIL + torchvision.transforms.v2 on this machine, same pipeline (ANCHORS.md).
const TORCHVISION_IMG_PER_S: f64 = 388.0;

/// Arguments of `cargo xtask bench data`.
#[derive(Debug, clap::Args)]
pub struct DataArgs {
    /// Folder of images (`<concept>/<image>` layout); default: hymenoptera's train/.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Decoding threads of the loader.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Shorter side after resizing.
    #[arg(long, default_value_t = 256)]
    pub resize: u32,
    /// Random crop side.
    #[arg(long, default_value_t = 224)]
    pub crop: u32,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Timed epochs (after one warm-up epoch); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Images/s of the reference pipeline to compare with.
    #[arg(long, default_value_t = TORCHVISION_IMG_PER_S)]
    pub reference: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the benchmark.
pub fn run(args: DataArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/hymenoptera_data/train")
    });
    if !dir.is_dir() {
        bail!(
            "{}: no such folder (pass --dir with a folder of concept folders of images)",
            dir.display()
        );
    }
    let t = Instant::now();
    let data = Arc::new(Dataset::open(&dir).with_context(|| format!("opening {}", dir.display()))?);
    let scan_s = t.elapsed().as_secs_f64();
    let n = data.len();
    println!(
        "data: {} ({n} images, {} concepts; scan with header check {:.0} ms)",
        dir.display(),
        data.concepts.len(),
        scan_s * 1e3
    );
    let pipeline = Arc::new(
        Pipeline::default()
            .push(Resize::shorter_side(args.resize))
            .push(RandomCrop::new(args.crop))
            .push(RandomFlip::new(0.5, false)),
    );
    println!(
        "pipeline: decode -> resize shorter side {} (bilinear, antialiased) -> random crop {} -> flip p=0.5 -> ImageNet normalise -> [N,3,{},{}] f32; batch {}, {} threads",
        args.resize, args.crop, args.crop, args.crop, args.batch, args.threads
    );

    let mut rates = Vec::new();
    for epoch in 0..=args.rounds {
        let cfg = LoaderConfig {
            batch_size: args.batch,
            seed: 0,
            epoch: epoch as u64,
            threads: args.threads,
            ..LoaderConfig::default()
        };
        let t = Instant::now();
        let mut seen = 0;
        for b in Loader::new(data.clone(), pipeline.clone(), cfg) {
            let b = b?;
            seen += b.images.dims()[0];
        }
        let s = t.elapsed().as_secs_f64();
        if seen != n {
            bail!("loaded {seen} images, expected {n}");
        }
        if epoch > 0 {
            rates.push(n as f64 / s);
        }
    }
    let rate = median(rates.clone());
    let best = rates.iter().copied().fold(0.0, f64::max);

    // Single-thread breakdown of the same work, per image.
    let (mut dec, mut res, mut rest) = (0.0, 0.0, 0.0);
    let resize = Resize::shorter_side(args.resize);
    let crop = RandomCrop::new(args.crop);
    let flip = RandomFlip::new(0.5, false);
    let mut buf = vec![0f32; 3 * (args.crop * args.crop) as usize];
    for (i, item) in data.items.iter().enumerate() {
        let mut rng = item_rng(0, 0, i as u64);
        let t0 = Instant::now();
        let img = decode_file(item.path(), &DecodeOptions::default())?;
        let t1 = Instant::now();
        let img = resize.apply(img, &mut rng)?;
        let t2 = Instant::now();
        let img = flip.apply(crop.apply(img, &mut rng)?, &mut rng)?;
        write_chw(&img, Normalize::ImageNet, &mut buf)?;
        let t3 = Instant::now();
        dec += (t1 - t0).as_secs_f64();
        res += (t2 - t1).as_secs_f64();
        rest += (t3 - t2).as_secs_f64();
    }
    let per = |s: f64| s / n as f64 * 1e3;

    println!();
    println!("| pipeline | img/s |");
    println!("|---|---|");
    println!(
        "| vct Loader, {} threads (median of {} epochs; best {best:.0}) | {rate:.0} |",
        args.threads, args.rounds
    );
    println!(
        "| PIL + torchvision, 1 process (../shared/perf/ANCHORS.md) | {:.0} |",
        args.reference
    );
    println!();
    println!("ratio vct / torchvision: {:.2}x", rate / args.reference);
    println!(
        "per image on 1 thread: decode {:.2} ms, resize {:.2} ms, crop+flip+normalise {:.2} ms",
        per(dec),
        per(res),
        per(rest)
    );
    Ok(ExitCode::SUCCESS)
}
