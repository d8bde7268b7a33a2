//! Image decoding and augmentation transforms for vct: resize, crop, flip, normalise, to-tensor.
//!
//! Images travel between transforms as 8-bit RGB ([`image::RgbImage`]); only the
//! last step ([`to_tensor`] / [`write_chw`]) turns them into normalised `f32`
//! NCHW data. Every random choice is drawn from an explicit [`ItemRng`], seeded
//! per (run seed, epoch, item) by [`item_rng`], so an item's augmentation does not
//! depend on thread count or batch order.
//!
//! Loaders use [`Pipeline::load_into`]: it recognises the usual geometric head
//! (resize + crop, or a random-resized crop) and runs decode → resize of only
//! the crop window → flip → normalise straight into the batch buffer, with
//! per-thread buffers reused from image to image; training pipelines may also
//! decode large JPEGs at reduced scale ([`Pipeline::reduced_decode`]).

mod decode;
mod error;
mod load;
mod mix;
mod normalize;
mod preprocess;
mod randaugment;
mod transforms;

pub use decode::{decode_bytes, decode_file, DecodeOptions, IMAGE_EXTENSIONS};
pub use error::AugmentError;
pub use image::RgbImage;
pub use load::ImageSource;
pub use mix::{Mixup, MixupMode};
pub use normalize::{to_tensor, write_chw, Normalize, BGR_MEAN, IMAGENET_MEAN, IMAGENET_STD};
pub use preprocess::EvalPreprocess;
pub use randaugment::RandAugment;
pub use transforms::{
    eval_resize_size, resized_crop, CenterCrop, Filter, FlipDirection, RandomCrop, RandomFlip,
    RandomResizedCrop, Resize, ResizeTarget,
};

use rand::SeedableRng;

/// The random generator every transform draws from.
pub type ItemRng = rand_chacha::ChaCha8Rng;

/// The generator of one item's augmentation in one epoch.
///
/// Seeding from all three numbers (not from a shared stream) makes the result
/// independent of the order in which threads reach the item.
pub fn item_rng(seed: u64, epoch: u64, index: u64) -> ItemRng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    key[16..24].copy_from_slice(&index.to_le_bytes());
    key[24..].copy_from_slice(b"vct-aug1");
    ItemRng::from_seed(key)
}

/// One image in, one image out; randomness only from the given generator.
pub trait Transform: Send + Sync + std::fmt::Debug {
    /// Applies the transform.
    fn apply(&self, image: RgbImage, rng: &mut ItemRng) -> Result<RgbImage, AugmentError>;

    /// What [`Pipeline::load_into`]'s fused path may know about this step
    /// (default [`StepKind::Opaque`]: it runs on whole images, as `apply`).
    fn kind(&self) -> StepKind {
        StepKind::Opaque
    }
}

/// A step as the fused loading path sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum StepKind {
    /// A [`Resize`].
    Resize(Resize),
    /// A [`CenterCrop`].
    CenterCrop(CenterCrop),
    /// A [`RandomCrop`].
    RandomCrop(RandomCrop),
    /// A [`RandomResizedCrop`].
    RandomResizedCrop(RandomResizedCrop),
    /// A [`RandomFlip`].
    Flip(RandomFlip),
    /// Changes pixels, never the size (RandAugment).
    SizePreserving,
    /// Anything else.
    Opaque,
}

/// Transforms applied in order.
#[derive(Debug, Default)]
pub struct Pipeline {
    steps: Vec<Box<dyn Transform>>,
    reduced_decode: bool,
}

impl Pipeline {
    /// A pipeline of `steps`, applied first to last.
    pub fn new(steps: Vec<Box<dyn Transform>>) -> Pipeline {
        Pipeline {
            steps,
            reduced_decode: false,
        }
    }

    /// Lets [`Pipeline::load_into`] / [`Pipeline::load`] decode a JPEG at 1/4
    /// or 1/8 scale (DCT scaling) when the resize after it still shrinks at
    /// least 2× (Pillow's `reducing_gap`), i.e. the first resize shrinks 8× or
    /// more. Pixels then differ from a full decode + resize: within 2.5 levels
    /// mean absolute difference on the test photos (edges up to ~30 levels:
    /// the reduced IDCT is a box filter), so this is an explicit option for
    /// training augmentation; off (the default) the fused path gives exactly
    /// the plain path's pixels.
    pub fn reduced_decode(mut self, on: bool) -> Pipeline {
        self.reduced_decode = on;
        self
    }

    /// Whether reduced-scale decoding is on.
    pub fn uses_reduced_decode(&self) -> bool {
        self.reduced_decode
    }

    /// Appends a step.
    pub fn push(mut self, step: impl Transform + 'static) -> Pipeline {
        self.steps.push(Box::new(step));
        self
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// True for the identity pipeline.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs every step.
    pub fn apply(&self, image: RgbImage, rng: &mut ItemRng) -> Result<RgbImage, AugmentError> {
        self.steps
            .iter()
            .try_fold(image, |img, t| t.apply(img, rng))
    }

    /// The usual evaluation preprocessing: resize the shorter side to
    /// [`eval_resize_size`] (`size / crop_ratio`, rounded), then centre-crop `size`×`size`.
    pub fn eval(size: u32, crop_ratio: f64, filter: Filter) -> Result<Pipeline, AugmentError> {
        let resize = eval_resize_size(size, crop_ratio)?;
        Ok(Pipeline::default()
            .push(Resize::shorter_side(resize).with_filter(filter))
            .push(CenterCrop::new(size)))
    }
}

impl Transform for Pipeline {
    fn apply(&self, image: RgbImage, rng: &mut ItemRng) -> Result<RgbImage, AugmentError> {
        Pipeline::apply(self, image, rng)
    }
}

/// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
