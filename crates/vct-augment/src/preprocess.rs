//! The evaluation preprocessing a network's pretrained weights expect, as plain
//! data: which resize, crop, channel order and scale turn a decoded image into
//! the tensor those weights were trained on.
//!
//! This crate knows no architectures: an architecture crate says which values
//! its weights need (vct-arch's `Arch::preprocess()` returns an
//! [`EvalPreprocess`]), and this crate applies them.

use std::path::Path;

use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::param;
use crate::{
    decode_file, item_rng, to_tensor, AugmentError, CenterCrop, DecodeOptions, Filter, Normalize,
    Pipeline, Resize, Transform,
};

/// Resize the shorter side to `resize` (aspect kept, the longer side truncated,
/// as torchvision's `Resize(resize)`), centre-crop `crop`×`crop` (torchvision's
/// `CenterCrop`, zero padding if smaller), then normalise ([`Normalize`]: channel
/// order, scale, mean, std) into an NCHW `f32` tensor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalPreprocess {
    /// Shorter side after the resize.
    pub resize: u32,
    /// Side of the square centre crop (the network input).
    pub crop: u32,
    /// Resampling filter of the resize (antialiased, as Pillow's).
    pub filter: Filter,
    /// Pixel normalisation.
    pub normalize: Normalize,
}

impl EvalPreprocess {
    /// torchvision's ImageNet evaluation (its ResNet weights, and
    /// `pretrainedmodels`' `TransformImage` at scale 0.875): `Resize(256)`
    /// bilinear, `CenterCrop(224)`, `ToTensor`, ImageNet mean / std.
    pub const IMAGENET: EvalPreprocess = EvalPreprocess {
        resize: 256,
        crop: 224,
        filter: Filter::Bilinear,
        normalize: Normalize::ImageNet,
    };

    /// Shorter side to `resize`, centre crop `crop`, bilinear, then `normalize`.
    pub fn new(resize: u32, crop: u32, normalize: Normalize) -> EvalPreprocess {
        EvalPreprocess {
            resize,
            crop,
            filter: Filter::Bilinear,
            normalize,
        }
    }

    /// The same with another resampling filter.
    pub fn with_filter(mut self, filter: Filter) -> EvalPreprocess {
        self.filter = filter;
        self
    }

    fn check(&self) -> Result<(), AugmentError> {
        if self.resize == 0 || self.crop == 0 {
            return Err(param(
                "preprocess (resize, crop)",
                (self.resize, self.crop),
                "both at least 1",
            ));
        }
        Ok(())
    }

    /// The resize and the crop as a [`Pipeline`] (for a data loader).
    pub fn pipeline(&self) -> Pipeline {
        Pipeline::default()
            .push(Resize::shorter_side(self.resize).with_filter(self.filter))
            .push(CenterCrop::new(self.crop))
    }

    /// Resizes and crops one image: `crop`×`crop` RGB, not yet normalised.
    pub fn apply(&self, image: RgbImage) -> Result<RgbImage, AugmentError> {
        self.check()?;
        // Resize and centre crop draw nothing; the generator only fills the signature.
        self.pipeline().apply(image, &mut item_rng(0, 0, 0))
    }

    /// One image as the normalised `[1, 3, crop, crop]` tensor.
    pub fn tensor(&self, image: RgbImage, device: &Device) -> Result<Tensor, AugmentError> {
        self.batch([image], device)
    }

    /// Images of any sizes as one normalised `[N, 3, crop, crop]` batch.
    pub fn batch(
        &self,
        images: impl IntoIterator<Item = RgbImage>,
        device: &Device,
    ) -> Result<Tensor, AugmentError> {
        let crops = images
            .into_iter()
            .map(|img| self.apply(img))
            .collect::<Result<Vec<_>, _>>()?;
        to_tensor(&crops, self.normalize, device)
    }

    /// Decodes an image file (EXIF orientation applied, as
    /// [`DecodeOptions::default`]) into the normalised `[1, 3, crop, crop]` tensor.
    pub fn load(&self, path: &Path, device: &Device) -> Result<Tensor, AugmentError> {
        self.tensor(decode_file(path, &DecodeOptions::default())?, device)
    }
}

impl Transform for EvalPreprocess {
    fn apply(&self, image: RgbImage, _rng: &mut crate::ItemRng) -> Result<RgbImage, AugmentError> {
        EvalPreprocess::apply(self, image)
    }
}
