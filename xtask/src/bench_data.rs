//! `cargo xtask bench data`: images/s of the data pipeline on real JPEGs —
//! decode → resize shorter side 256 → random crop 224 → random flip → normalise →
//! NCHW tensor — through the `vct_data::Loader` (rayon pool, prefetch queue,
//! the one-pass `Pipeline::load_into` per image). With `--torch
//! bench/torch_loader.py` it runs the torchvision DataLoader with as many
//! workers as vct's threads on the same folder, alternating round by round, and
//! prints the ratio. Then a single-thread breakdown per stage of the plain path
//! (decode → apply → write_chw) against the one-pass path, and a check that
//! both give the same pixels on every image.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use vct_augment::{
    decode_file, item_rng, write_chw, DecodeOptions, ImageSource, Normalize, Pipeline, RandomCrop,
    RandomFlip, Resize, Transform,
};
use vct_data::{Dataset, Loader, LoaderConfig};

/// Arguments of `cargo xtask bench data`.
#[derive(Debug, clap::Args)]
pub struct DataArgs {
    /// Folder of images (`<concept>/<image>` layout); default: hymenoptera's train/.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Decoding threads of the loader (and the DataLoader's `num_workers`).
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
    /// Timed epochs per round (after one warm-up epoch); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Rounds; with `--torch`, each runs vct then PyTorch.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// The PyTorch side (`bench/torch_loader.py`), run alternately with vct.
    #[arg(long)]
    pub torch: Option<PathBuf>,
    /// Python interpreter with torch and torchvision, for `--torch`.
    #[arg(long, default_value = "python3")]
    pub python: PathBuf,
    /// Decode JPEGs at 1/4 or 1/8 scale where the resize shrinks 8x or more.
    #[arg(long)]
    pub reduced_decode: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One vct round: a warm-up epoch, then the median images/s of `epochs` epochs.
fn vct_round(
    data: &Arc<Dataset>,
    pipeline: &Arc<Pipeline>,
    args: &DataArgs,
    round: usize,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let mut rates = Vec::new();
    for e in 0..=args.epochs {
        let cfg = LoaderConfig {
            batch_size: args.batch,
            seed: 0,
            epoch: (round * (args.epochs + 1) + e) as u64,
            threads: args.threads,
            ..LoaderConfig::default()
        };
        let t = Instant::now();
        let mut seen = 0;
        for b in Loader::new(data.clone(), pipeline.clone(), cfg) {
            seen += b?.images.dims()[0];
        }
        let s = t.elapsed().as_secs_f64();
        if seen != data.len() {
            bail!("loaded {seen} images, expected {}", data.len());
        }
        if e > 0 {
            rates.push(data.len() as f64 / s);
        }
    }
    Ok((median(rates.clone()), rates))
}

/// One PyTorch round: runs the script and reads its `N img/s`.
fn torch_round(script: &PathBuf, args: &DataArgs, dir: &std::path::Path) -> anyhow::Result<f64> {
    let out = Command::new(&args.python)
        .arg(script)
        .arg(dir)
        .arg(args.threads.to_string())
        .arg(args.epochs.to_string())
        .args([args.resize, args.crop, args.batch as u32].map(|v| v.to_string()))
        .output()
        .with_context(|| format!("running {} {}", args.python.display(), script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{} failed ({}):\n{stdout}{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    print!("  {stdout}");
    stdout
        .split(" img/s")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .with_context(|| {
            format!(
                "no `N img/s` in the output of {}: {stdout}",
                script.display()
            )
        })
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
    if args.epochs == 0 || args.rounds == 0 {
        bail!("--epochs and --rounds must be at least 1");
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
            .push(RandomFlip::new(0.5, false))
            .reduced_decode(args.reduced_decode),
    );
    println!(
        "pipeline: decode -> resize shorter side {} (bilinear, antialiased) -> random crop {} -> flip p=0.5 -> ImageNet normalise -> [N,3,{},{}] f32; batch {}, {} threads{}",
        args.resize,
        args.crop,
        args.crop,
        args.crop,
        args.batch,
        args.threads,
        if args.reduced_decode { ", reduced-scale JPEG decoding" } else { "" }
    );

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let (rate, epochs) = vct_round(&data, &pipeline, &args, round)?;
        println!(
            "round {}: vct Loader {rate:.0} img/s (epochs {:?})",
            round + 1,
            epochs.iter().map(|r| r.round()).collect::<Vec<_>>()
        );
        ours.push(rate);
        if let Some(script) = &args.torch {
            let rate = torch_round(script, &args, &dir)?;
            println!(
                "round {}: ratio vct / torchvision {:.2}x",
                round + 1,
                ours[round] / rate
            );
            theirs.push(rate);
        }
    }

    // Single-thread breakdown, per image: the plain path by stage, and the
    // one-pass path; both on the same random draws, compared pixel for pixel.
    let (mut dec, mut res, mut rest, mut fused) = (0.0, 0.0, 0.0, 0.0);
    let resize = Resize::shorter_side(args.resize);
    let crop = RandomCrop::new(args.crop);
    let flip = RandomFlip::new(0.5, false);
    let per = 3 * (args.crop * args.crop) as usize;
    let (mut plain_buf, mut fused_buf) = (vec![0f32; per], vec![0f32; per]);
    let mut differ = 0;
    let opts = DecodeOptions::default();
    for (i, item) in data.items.iter().enumerate() {
        let mut rng = item_rng(0, 0, i as u64);
        let t0 = Instant::now();
        let img = decode_file(item.path(), &opts)?;
        let t1 = Instant::now();
        let img = resize.apply(img, &mut rng)?;
        let t2 = Instant::now();
        let img = flip.apply(crop.apply(img, &mut rng)?, &mut rng)?;
        write_chw(&img, Normalize::ImageNet, &mut plain_buf)?;
        let t3 = Instant::now();
        let mut rng = item_rng(0, 0, i as u64);
        pipeline.load_into(
            ImageSource::File(item.path()),
            &opts,
            &mut rng,
            Normalize::ImageNet,
            &mut fused_buf,
        )?;
        let t4 = Instant::now();
        dec += (t1 - t0).as_secs_f64();
        res += (t2 - t1).as_secs_f64();
        rest += (t3 - t2).as_secs_f64();
        fused += (t4 - t3).as_secs_f64();
        differ += usize::from(plain_buf != fused_buf);
    }
    let ms = |s: f64| s / n as f64 * 1e3;

    println!();
    println!("| pipeline | img/s (median of rounds) | rounds |");
    println!("|---|---|---|");
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "| vct Loader, {} threads | {:.0} | {} |",
        args.threads,
        median(ours.clone()),
        fmt(&ours)
    );
    if !theirs.is_empty() {
        println!(
            "| torchvision DataLoader, num_workers {} | {:.0} | {} |",
            args.threads,
            median(theirs.clone()),
            fmt(&theirs)
        );
        let ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(a, b)| a / b).collect();
        println!();
        println!(
            "ratio vct / torchvision per round: {}",
            ratios
                .iter()
                .map(|r| format!("{r:.2}x"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "per image on 1 thread: plain path decode {:.2} ms + resize {:.2} ms + crop/flip/normalise {:.2} ms = {:.2} ms; one-pass load_into {:.2} ms",
        ms(dec),
        ms(res),
        ms(rest),
        ms(dec + res + rest),
        ms(fused)
    );
    if args.reduced_decode {
        println!("one-pass output differs from the plain path on {differ} of {n} images (reduced-scale decoding on)");
    } else if differ > 0 {
        bail!(
            "the one-pass path differs from decode -> apply -> write_chw on {differ} of {n} images"
        );
    } else {
        println!("one-pass output equals the plain path's on all {n} images");
    }
    Ok(ExitCode::SUCCESS)
}
