//! Where each template's pretrained weights come from, and the lookup that
//! finds them: `--weights FILE`, then `$VCT_WEIGHTS_DIR`, then the Hugging
//! Face cache, then a download (unless offline).
//!
//! [`DEFAULT_WEIGHTS`] is the one table of default sources, each with the
//! reason it was chosen; `--weights-source` overrides it
//! ([`WeightsResolver::source_override`]). Downloads and the cache are
//! [`vct_hub`]'s.

use std::fmt;
use std::path::PathBuf;

use vct_arch::weights::pretrained_source;
use vct_arch::Arch;
use vct_hparams::Template;
use vct_hub::{HubError, HubOptions, WeightsSource};

/// A template's default pretrained weights and why they were chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateWeights {
    /// The template.
    pub template: Template,
    /// The default source in `--weights-source` syntax (a Hub `repo:file` or a
    /// URL), or `None` for a template that starts from random weights.
    pub source: Option<&'static str>,
    /// Why this source.
    pub reason: &'static str,
}

/// BN-Inception as `pretrainedmodels` distributes it (its `bninception` model's
/// `pretrained_settings['bninception']['imagenet']['url']`).
pub const BN_INCEPTION_URL: &str =
    "http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth";

/// The default pretrained weights of every template, in [`Template::ALL`] order.
pub const DEFAULT_WEIGHTS: [TemplateWeights; 5] = [
    TemplateWeights {
        template: Template::RsbA1,
        source: Some("timm/resnet50.a1_in1k:model.safetensors"),
        reason: "exactly this recipe's checkpoint: timm's ResNet-50 trained on ImageNet-1k with \
                 the \"ResNet strikes back\" A1 procedure (LAMB, BCE, 600 epochs) that the \
                 template reproduces; Apache-2.0",
    },
    TemplateWeights {
        template: Template::InceptionBatchNorm,
        source: Some(BN_INCEPTION_URL),
        reason: "the public ImageNet-1k BN-Inception weights (Caffe model converted by Cadene's \
                 pretrainedmodels, the file its bninception(pretrained='imagenet') downloads); \
                 not published on the Hub; inputs BGR 0..255 minus (104, 117, 128), as the \
                 recipe feeds them",
    },
    TemplateWeights {
        template: Template::InceptionV2,
        source: None,
        reason: "the template trains Inception-v2 from random weights",
    },
    TemplateWeights {
        template: Template::ResNext,
        source: Some("timm/resnext50_32x4d.fb_swsl_ig1b_ft_in1k:model.safetensors"),
        reason: "the largest-scale public pretraining of ResNeXt-50 32x4d: semi-weakly \
                 supervised on 940M Instagram images, then fine-tuned on ImageNet-1k (Yalniz et \
                 al. 2019). Clarifai's own start is ImageNet-21k, which is not published for this \
                 net; timm's other tags see less data (fb_ssl_yfcc100m_ft_in1k: 100M YFCC \
                 images; a1h_in1k, tv2_in1k, tv_in1k: ImageNet-1k only). Licence CC-BY-NC-4.0 \
                 (non-commercial): for commercial use pass \
                 --weights-source timm/resnext50_32x4d.tv2_in1k (BSD-3-Clause)",
    },
    TemplateWeights {
        template: Template::TransferEmbedNorm,
        source: Some(BN_INCEPTION_URL),
        reason: "the same BN-Inception backbone as Clarifai_InceptionBatchNorm: the public \
                 ImageNet-1k weights from pretrainedmodels",
    },
];

/// The table row of `template`.
pub fn default_weights(template: Template) -> &'static TemplateWeights {
    DEFAULT_WEIGHTS
        .iter()
        .find(|w| w.template == template)
        // Every template has a row (a test checks it); the first keeps this total.
        .unwrap_or(&DEFAULT_WEIGHTS[0])
}

/// The parsed default source of `template` (`None`: random start).
pub fn default_source(template: Template) -> Option<WeightsSource> {
    default_weights(template)
        .source
        // The table's strings are constants checked by a test: they parse.
        .and_then(|s| WeightsSource::parse_override(s).ok())
}

/// Where the resolver found the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsOrigin {
    /// `--weights FILE`.
    Explicit,
    /// `$VCT_WEIGHTS_DIR`.
    WeightsDir,
    /// Already in the Hugging Face cache.
    Cache,
    /// Downloaded just now into the cache.
    Downloaded,
}

impl fmt::Display for WeightsOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WeightsOrigin::Explicit => "--weights",
            WeightsOrigin::WeightsDir => "$VCT_WEIGHTS_DIR",
            WeightsOrigin::Cache => "cache",
            WeightsOrigin::Downloaded => "downloaded",
        })
    }
}

/// A pretrained file found by [`WeightsResolver::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedWeights {
    /// The file to load.
    pub path: PathBuf,
    /// Where it was found.
    pub origin: WeightsOrigin,
    /// The source it came from (cache and download; `None` for a local file).
    pub source: Option<WeightsSource>,
}

impl fmt::Display for ResolvedWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.path.display(), self.origin)?;
        if let Some(s) = &self.source {
            write!(f, ", {s}")?;
        }
        f.write_str(")")
    }
}

/// The resolver's errors: each lists every place looked and how to go on.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// `--weights FILE` names no file.
    #[error("--weights {}: no such file", path.display())]
    ExplicitMissing {
        /// The path given.
        path: PathBuf,
    },
    /// Nothing found and nothing to download (offline, or no source).
    #[error("no pretrained weights for {template} ({arch}); looked at:\n{looked}\n{hint}")]
    NotFound {
        /// The template.
        template: Template,
        /// Its architecture.
        arch: Arch,
        /// One line per place looked.
        looked: String,
        /// How to provide the file.
        hint: String,
    },
    /// The download failed (network, 404, checksum): nothing was left half-written.
    #[error(
        "pretrained weights for {template} ({arch}): {error}\nlooked first at:\n{looked}\n{hint}"
    )]
    Download {
        /// The template.
        template: Template,
        /// Its architecture.
        arch: Arch,
        /// One line per place looked before downloading.
        looked: String,
        /// How to provide the file.
        hint: String,
        /// What went wrong.
        error: Box<HubError>,
    },
}

/// The lookup order for pretrained weights: explicit file, weights folder,
/// Hugging Face cache, download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsResolver {
    /// `--weights FILE`: used as is, nothing else is searched.
    pub explicit: Option<PathBuf>,
    /// `$VCT_WEIGHTS_DIR`: a folder of files named as [`pretrained_source`] says
    /// (`resnet50.safetensors`, `bn_inception-52deb4733.pth`, ...).
    pub weights_dir: Option<PathBuf>,
    /// `--weights-source REPO[:FILE]` or URL: replaces the template's default.
    pub source_override: Option<WeightsSource>,
    /// Cache, endpoint, offline (`HF_*` variables, `--offline`).
    pub hub: HubOptions,
}

impl WeightsResolver {
    /// `explicit` plus `$VCT_WEIGHTS_DIR` and the `HF_*` variables.
    pub fn from_env(explicit: Option<PathBuf>) -> WeightsResolver {
        WeightsResolver {
            explicit,
            weights_dir: std::env::var_os("VCT_WEIGHTS_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            source_override: None,
            hub: HubOptions::from_env(),
        }
    }

    /// Turns downloads off (`--offline`; `HF_HUB_OFFLINE` already did if set).
    pub fn offline(mut self, offline: bool) -> WeightsResolver {
        self.hub = self.hub.offline(offline);
        self
    }

    /// Replaces every template's default source (`--weights-source`).
    pub fn with_source(mut self, source: Option<WeightsSource>) -> WeightsResolver {
        self.source_override = source;
        self
    }

    /// The source used for `template`: the override, else the table's default.
    pub fn source_for(&self, template: Template) -> Option<WeightsSource> {
        self.source_override
            .clone()
            .or_else(|| default_source(template))
    }

    /// File names searched in the weights folder. With `--weights-source` only
    /// a URL source's own file name (its hash is in it): the folder's
    /// architecture-named files are the defaults the override replaces.
    fn dir_names(&self, arch: Arch, source: Option<&WeightsSource>) -> Vec<String> {
        let url_name = match source {
            Some(s @ WeightsSource::Url { .. }) => Some(s.file_name().to_string()),
            _ => None,
        };
        if self.source_override.is_some() {
            return url_name.into_iter().collect();
        }
        let mut names = pretrained_source(arch).files;
        if let Some(n) = url_name {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names
    }

    fn hint(&self, template: Template, names: &[String]) -> String {
        let mut ways = vec!["give a file with --weights FILE".to_string()];
        if !names.is_empty() {
            ways.push(format!("put {} in $VCT_WEIGHTS_DIR", names.join(" or ")));
        }
        if self.source_for(template).is_some() {
            ways.push(format!(
                "download it on a connected machine with `cargo xtask weights fetch {template}` \
                 and copy the cache ({})",
                self.hub.cache_dir.display()
            ));
        }
        ways.push("name another source with --weights-source REPO[:FILE] or URL".into());
        ways.push(format!(
            "or pass --random-init to train {template} from random weights"
        ));
        format!("to fix: {}", ways.join("; "))
    }

    /// The pretrained file for `template`, whose network is `arch` (the recipe's).
    pub fn resolve(&self, template: Template, arch: Arch) -> Result<ResolvedWeights, WeightsError> {
        if let Some(p) = &self.explicit {
            return if p.is_file() {
                Ok(ResolvedWeights {
                    path: p.clone(),
                    origin: WeightsOrigin::Explicit,
                    source: None,
                })
            } else {
                Err(WeightsError::ExplicitMissing { path: p.clone() })
            };
        }
        let source = self.source_for(template);
        let names = self.dir_names(arch, source.as_ref());
        let mut looked = Vec::new();
        match &self.weights_dir {
            Some(dir) if !names.is_empty() => {
                for n in &names {
                    let p = dir.join(n);
                    if p.is_file() {
                        return Ok(ResolvedWeights {
                            path: p,
                            origin: WeightsOrigin::WeightsDir,
                            source: None,
                        });
                    }
                    looked.push(format!(
                        "  {} ($VCT_WEIGHTS_DIR): no such file",
                        p.display()
                    ));
                }
            }
            Some(dir) => looked.push(format!(
                "  $VCT_WEIGHTS_DIR {}: skipped (--weights-source names a Hub file)",
                dir.display()
            )),
            None => looked.push(format!(
                "  $VCT_WEIGHTS_DIR: not set (would look for {})",
                names.join(", ")
            )),
        }
        let Some(src) = source else {
            looked.push(format!(
                "  no download source: {template} starts from random weights by default"
            ));
            return Err(self.not_found(template, arch, looked, &names));
        };
        if let Some(path) = vct_hub::cached(&src, &self.hub) {
            return Ok(ResolvedWeights {
                path,
                origin: WeightsOrigin::Cache,
                source: Some(src),
            });
        }
        looked.push(format!(
            "  {} (Hugging Face cache, {src}): not there",
            vct_hub::cache_location(&src, &self.hub).display()
        ));
        if self.hub.offline {
            looked.push(format!(
                "  download of {}: skipped, offline (--offline or HF_HUB_OFFLINE)",
                src.remote_url(&self.hub.endpoint)
            ));
            return Err(self.not_found(template, arch, looked, &names));
        }
        match vct_hub::download(&src, &self.hub) {
            Ok(path) => Ok(ResolvedWeights {
                path,
                origin: WeightsOrigin::Downloaded,
                source: Some(src),
            }),
            Err(error) => Err(WeightsError::Download {
                template,
                arch,
                looked: looked.join("\n"),
                hint: self.hint(template, &names),
                error: Box::new(error),
            }),
        }
    }

    fn not_found(
        &self,
        template: Template,
        arch: Arch,
        looked: Vec<String>,
        names: &[String],
    ) -> WeightsError {
        WeightsError::NotFound {
            template,
            arch,
            looked: looked.join("\n"),
            hint: self.hint(template, names),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_every_template_once_and_its_sources_parse() {
        for (row, t) in DEFAULT_WEIGHTS.iter().zip(Template::ALL) {
            assert_eq!(row.template, t);
            assert!(!row.reason.is_empty());
            if let Some(s) = row.source {
                let src = WeightsSource::parse_override(s).unwrap();
                src.validate().unwrap();
                assert_eq!(default_source(t), Some(src));
            }
        }
        assert_eq!(
            default_source(Template::RsbA1),
            Some(WeightsSource::hub(
                "timm/resnet50.a1_in1k",
                "model.safetensors"
            ))
        );
        assert!(default_source(Template::InceptionV2).is_none());
        match default_source(Template::InceptionBatchNorm) {
            Some(WeightsSource::Url {
                sha256, file_name, ..
            }) => {
                assert_eq!(sha256, "52deb4733");
                assert_eq!(file_name, "bn_inception-52deb4733.pth");
            }
            other => panic!("{other:?}"),
        }
    }
}
