//! The model file: a safetensors file holding every trained tensor by its module path, the
//! factorized prior's integer tables, and the architecture's name in the metadata.
//!
//! Large tensors are stored as f16 (half the size, no measurable rate-distortion loss for
//! convolution weights); small ones (GDN, density, gains) as f32. Both convert to f32 exactly,
//! so every consumer — Burn on any backend, and the deterministic CPU path — sees the same
//! weights. The first 8 bytes of the file's SHA-256 identify the weights in every stream.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::ParamId;
use burn::store::{ModuleSnapshot, TensorSnapshot};
use burn::tensor::TensorData;
use burn::tensor::backend::Backend;
use entropy::FactorizedTables;
use safetensors::tensor::{Dtype, TensorView};
use sha2::{Digest, Sha256};

use crate::model::Model;
use crate::model::post_filter::{Shape, fold_of, is_post_filter_tensor};
use crate::zoo::ModelId;

/// Tensors with more elements than this are stored as f16.
const F16_ABOVE: usize = 4096;
/// Name of the tensor that holds the factorized tables.
const FACTORIZED: &str = "entropy.factorized_tables";
/// Metadata key naming the architecture.
const ARCH_KEY: &str = "ember.model";
/// Largest model file accepted (a v1 model is about 10 MB).
const MAX_FILE_BYTES: u64 = 512 << 20;

/// Errors from reading or writing a model file.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read model file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("model file {0} is not a valid Ember model: {1}")]
    Invalid(String, String),
}

/// One float tensor of a model file.
#[derive(Clone, Debug)]
pub struct NamedTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A loaded model file: float tensors by module path, integer tables, fingerprint.
#[derive(Clone, Debug)]
pub struct ModelFile {
    pub model: ModelId,
    pub tensors: BTreeMap<String, NamedTensor>,
    pub factorized: FactorizedTables,
    /// First 8 bytes of the file's SHA-256, little-endian.
    pub hash: u64,
}

/// A Burn model of the architecture `model` (random weights, no post-filter).
fn architecture<B: Backend>(model: ModelId, device: &B::Device) -> Model<B> {
    match model {
        ModelId::MrcV1 => Model::new(device),
        ModelId::MrcV2 => Model::new(device).with_global_refs(),
    }
}

/// First 8 bytes of the SHA-256 of `bytes`: the model file's `hash`, and what anything else
/// derived from weights is keyed by.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    let digest = Sha256::digest(bytes);
    u64::from_le_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"))
}

impl ModelFile {
    /// Takes the weights of a Burn model and quantizes its hyper-latent prior to tables.
    pub fn from_model<B: Backend>(model: &Model<B>) -> Self {
        let mut tensors = BTreeMap::new();
        for snap in model.collect(None, None, true) {
            let data = snap.to_data().expect("module tensors materialize");
            let shape = data.shape.to_vec();
            let data = data.convert::<f32>().to_vec::<f32>().expect("float tensor");
            tensors.insert(snap.full_path(), NamedTensor { shape, data });
        }
        let mut file = Self {
            model: if model.has_global_refs() {
                ModelId::MrcV2
            } else {
                ModelId::MrcV1
            },
            tensors,
            factorized: model.bottleneck.export_tables(),
            hash: 0,
        };
        // Round-trip through the stored precision so that the in-memory file equals a loaded one.
        let bytes = file.to_bytes();
        file = Self::from_bytes(&bytes, "<memory>").expect("a file this module wrote parses");
        file
    }

    /// A model with synthetic weights made by integer and correctly rounded f32 arithmetic
    /// only, so it is identical on every machine and never changes: the conformance streams in
    /// `testdata/` are coded with it. Its gains are large so that `y` spreads over many
    /// symbols (escapes included) and the entropy path is fully exercised; it is useless for
    /// image quality.
    pub fn synthetic<B: Backend>(seed: u64, device: &B::Device) -> Self {
        Self::synthetic_of::<B>(ModelId::MrcV1, seed, device)
    }

    /// [`synthetic`](Self::synthetic) weights for the architecture `model`.
    pub fn synthetic_of<B: Backend>(model: ModelId, seed: u64, device: &B::Device) -> Self {
        let mut tensors = BTreeMap::new();
        for snap in architecture::<B>(model, device).collect(None, None, true) {
            let name = snap.full_path();
            let shape = snap.shape.to_vec();
            let numel: usize = shape.iter().product();
            // FNV-1a of the name keys each tensor's stream of values.
            let key = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            let mut state = seed ^ key;
            let mut uniform = move || {
                // SplitMix64, then the top 24 bits as an exact f32 in [-1, 1).
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                ((z ^ (z >> 31)) >> 40) as f32 / 8_388_608.0 - 1.0
            };
            let data: Vec<f32> = if name.ends_with(".weight") {
                let fan_in: usize = shape[1..].iter().product();
                let bound = (3.0 / fan_in as f32).sqrt();
                (0..numel).map(|_| bound * uniform()).collect()
            } else if name.ends_with(".bias") {
                (0..numel).map(|_| 0.05 * uniform()).collect()
            } else if name.ends_with(".beta") {
                vec![1.0; numel]
            } else if name.ends_with(".gamma") {
                (0..numel)
                    .map(|i| if i % (shape[0] + 1) == 0 { 0.3 } else { 0.0 })
                    .collect()
            } else if name == "gain" {
                (0..numel)
                    .map(|i| 4.0 * (1 + i / shape[1]) as f32)
                    .collect()
            } else if name == "inv_gain" {
                (0..numel)
                    .map(|i| 0.25 / (1 + i / shape[1]) as f32)
                    .collect()
            } else {
                vec![0.0; numel]
            };
            tensors.insert(name, NamedTensor { shape, data });
        }
        // Hyper-latent tables: two-sided geometric masses, exact integers.
        let channels = tensors["bottleneck.biases.0"].shape[0];
        let tables: Vec<_> = (0..channels)
            .map(|c| {
                let r = 4 + (c % 13) as i32;
                let masses: Vec<u128> = (-r..=r)
                    .map(|v| 1u128 << (60 - 3 * v.unsigned_abs().min(20)))
                    .collect();
                entropy::CdfTable::from_masses(-r, &masses, 1 << 10)
                    .expect("small tables are valid")
            })
            .collect();
        let factorized = FactorizedTables::from_tables(tables).expect("one table per channel");
        let file = Self {
            model,
            tensors,
            factorized,
            hash: 0,
        };
        Self::from_bytes(&file.to_bytes(), "<synthetic>").expect("a file this module wrote parses")
    }

    /// Serializes to safetensors bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, t) in &self.tensors {
            if t.data.len() > F16_ABOVE {
                let bytes = t
                    .data
                    .iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect();
                buffers.push((name.clone(), Dtype::F16, t.shape.clone(), bytes));
            } else {
                let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
                buffers.push((name.clone(), Dtype::F32, t.shape.clone(), bytes));
            }
        }
        let tables = self.factorized.to_bytes();
        buffers.push((
            FACTORIZED.to_string(),
            Dtype::U8,
            vec![tables.len()],
            tables,
        ));
        let views: Vec<(String, TensorView<'_>)> = buffers
            .iter()
            .map(|(n, d, s, b)| {
                (
                    n.clone(),
                    TensorView::new(*d, s.clone(), b).expect("shape matches data"),
                )
            })
            .collect();
        let meta = std::collections::HashMap::from([(
            ARCH_KEY.to_string(),
            self.model.name().to_string(),
        )]);
        safetensors::serialize(views, Some(meta)).expect("in-memory serialization cannot fail")
    }

    /// Parses a model file; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, WeightsError> {
        let invalid = |m: String| WeightsError::Invalid(origin.to_string(), m);
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(bytes).map_err(|e| invalid(e.to_string()))?;
        let arch = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(ARCH_KEY))
            .cloned()
            .unwrap_or_default();
        let model = ModelId::ALL
            .into_iter()
            .find(|m| m.name() == arch)
            .ok_or_else(|| invalid(format!("unknown architecture {arch:?}")))?;
        let st =
            safetensors::SafeTensors::deserialize(bytes).map_err(|e| invalid(e.to_string()))?;
        let mut tensors = BTreeMap::new();
        let mut factorized = None;
        for (name, view) in st.tensors() {
            let raw = view.data();
            let data: Vec<f32> = match view.dtype() {
                Dtype::F16 => raw
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                Dtype::F32 => raw
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::U8 if name == FACTORIZED => {
                    factorized = Some(
                        FactorizedTables::from_bytes(raw)
                            .map_err(|e| invalid(format!("factorized tables: {e}")))?,
                    );
                    continue;
                }
                other => {
                    return Err(invalid(format!(
                        "tensor {name} has unsupported type {other:?}"
                    )));
                }
            };
            tensors.insert(
                name,
                NamedTensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        let factorized = factorized.ok_or_else(|| invalid("no factorized tables".into()))?;
        Ok(Self {
            model,
            tensors,
            factorized,
            hash: fingerprint(bytes),
        })
    }

    /// Reads a model file from disk, refusing absurd sizes before allocating.
    pub fn load(path: &Path) -> Result<Self, WeightsError> {
        let io = |source| WeightsError::Io {
            path: path.display().to_string(),
            source,
        };
        let bytes =
            crate::fsutil::read_bounded(path, MAX_FILE_BYTES).map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => WeightsError::Invalid(
                    path.display().to_string(),
                    format!("{e}: too large for a model"),
                ),
                _ => io(e),
            })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Writes the file atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        crate::fsutil::write_atomic(path, &self.to_bytes())
    }

    /// A tensor by module path, checked against the expected shape.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<&[f32], WeightsError> {
        let t = self.tensors.get(name).ok_or_else(|| {
            WeightsError::Invalid("model".into(), format!("missing tensor {name}"))
        })?;
        if t.shape != shape {
            return Err(WeightsError::Invalid(
                "model".into(),
                format!("tensor {name} has shape {:?}, expected {shape:?}", t.shape),
            ));
        }
        Ok(&t.data)
    }

    /// Does the file hold a post-filter (tensors `post.*`)? Files written before it existed,
    /// and the synthetic conformance model, do not, and decode exactly as they always did.
    pub fn has_post_filter(&self) -> bool {
        self.tensors.keys().any(|n| is_post_filter_tensor(n))
    }

    /// Does the file hold a latent residual predictor (tensors `lrp.*`,
    /// [`crate::model::lrp`])? Like the post-filter it shapes only the reconstruction, not
    /// the stream, so a file may or may not have one whatever its model id.
    pub fn has_lrp(&self) -> bool {
        self.tensors.keys().any(|n| n.starts_with("lrp."))
    }

    /// The post-filter's shape, read from its first layer's (files hold filters of different
    /// widths and folds). `None` when the file has no filter or its first layer is missing or
    /// not 4-dimensional; a missing or misshapen tensor is then reported by [`Self::to_burn`].
    fn post_filter_shape(&self) -> Option<Shape> {
        match self.tensors.get("post.c1.weight")?.shape[..] {
            [width, channels, _, _] => Some(Shape {
                width,
                fold: fold_of(channels),
            }),
            _ => None,
        }
    }

    /// Builds the Burn model on `device` with these weights.
    pub fn to_burn<B: Backend>(&self, device: &B::Device) -> Result<Model<B>, WeightsError> {
        let mut model = architecture(self.model, device);
        if self.has_post_filter() {
            model = model.with_post_filter(self.post_filter_shape().unwrap_or(Shape::DEFAULT));
        }
        if self.has_lrp() {
            model = model.with_lrp();
        }
        let snapshots = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let data = TensorData::new(t.data.clone(), t.shape.clone());
                TensorSnapshot::from_data(
                    data,
                    name.split('.').map(String::from).collect(),
                    Vec::new(),
                    ParamId::new(),
                )
            })
            .collect();
        let result = model.apply(snapshots, None, None, true);
        if !result.missing.is_empty() || !result.unused.is_empty() || !result.errors.is_empty() {
            return Err(WeightsError::Invalid(
                "model".into(),
                format!(
                    "weights do not match the architecture (missing {:?}, unused {:?}, errors {:?})",
                    result.missing, result.unused, result.errors
                ),
            ));
        }
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn model_file_round_trips_through_bytes_and_burn() {
        let dev = Default::default();
        let model = Model::<NdArray>::new(&dev);
        let file = ModelFile::from_model(&model);
        let params: usize = file.tensors.values().map(|t| t.data.len()).sum();
        eprintln!(
            "{} tensors, {params} parameters, {} bytes",
            file.tensors.len(),
            file.to_bytes().len()
        );
        for name in file.tensors.keys().take(200) {
            eprintln!("{name} {:?}", file.tensors[name].shape);
        }
        let back = ModelFile::from_bytes(&file.to_bytes(), "test").unwrap();
        assert_eq!(back.hash, file.hash);
        assert_eq!(back.factorized, file.factorized);
        let rebuilt = back.to_burn::<NdArray>(&dev).unwrap();
        assert_eq!(ModelFile::from_model(&rebuilt).hash, file.hash);
        assert!(rebuilt.post.is_none());
    }

    #[test]
    fn a_residual_predictor_travels_with_the_weights_and_only_when_present() {
        let dev = Default::default();
        assert!(!ModelFile::from_model(&Model::<NdArray>::new(&dev)).has_lrp());
        let file = ModelFile::from_model(&Model::<NdArray>::new(&dev).with_lrp());
        assert!(file.has_lrp());
        let rebuilt = file.to_burn::<NdArray>(&dev).unwrap();
        assert!(rebuilt.lrp.is_some());
        assert_eq!(ModelFile::from_model(&rebuilt).hash, file.hash);
        let mut broken = file.clone();
        broken.tensors.remove("lrp.c2.weight");
        let err = broken.to_burn::<NdArray>(&dev).unwrap_err().to_string();
        assert!(err.contains("lrp.c2.weight"), "{err}");
    }

    #[test]
    fn a_post_filter_travels_with_the_weights_and_only_when_present() {
        let dev = Default::default();
        let plain = ModelFile::from_model(&Model::<NdArray>::new(&dev));
        assert!(!plain.has_post_filter());
        let with =
            |shape| ModelFile::from_model(&Model::<NdArray>::new(&dev).with_post_filter(shape));
        let file = with(Shape::DEFAULT);
        assert!(file.has_post_filter());
        assert_ne!(file.hash, plain.hash);
        let rebuilt = file.to_burn::<NdArray>(&dev).unwrap();
        assert!(rebuilt.post.is_some());
        assert_eq!(ModelFile::from_model(&rebuilt).hash, file.hash);
        // A filter of another width or fold comes back with its own shape.
        for shape in [Shape { width: 24, fold: 1 }, Shape { width: 40, fold: 2 }] {
            let rebuilt = with(shape).to_burn::<NdArray>(&dev).unwrap();
            assert_eq!(rebuilt.post.map(|p| p.shape()), Some(shape));
        }
        // A first layer reading neither 3 nor 12 channels is refused.
        let mut odd = file.clone();
        let c1 = odd.tensors.get_mut("post.c1.weight").unwrap();
        c1.shape[1] = 5;
        c1.data = vec![0.0; c1.shape.iter().product()];
        assert!(odd.to_burn::<NdArray>(&dev).is_err());
        // A file missing one of the filter's tensors is refused, not half-loaded.
        let mut broken = file.clone();
        broken.tensors.remove("post.c2.weight");
        let err = broken.to_burn::<NdArray>(&dev).unwrap_err().to_string();
        assert!(err.contains("post.c2.weight"), "{err}");
    }
}
