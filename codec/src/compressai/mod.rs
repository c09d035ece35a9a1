//! CompressAI's trained models, read for import into Ember (the import issue): the checkpoint
//! reader and the architectures' parameter lists.
//!
//! A CompressAI checkpoint is a pickled PyTorch `state_dict`: the zoo's `.pth.tar` files hold
//! it as it is, CompressAI's training script under `"state_dict"` (with the `module.` prefix of
//! a model trained under `DataParallel`). It is read by burn-store's PyTorch reader, not by
//! parsing pickles here, and checked key by key against the architecture it is said to be, so
//! that a wrong `--arch` or a checkpoint of another model fails with one line naming the first
//! difference instead of importing garbage.
//!
//! The architectures are CompressAI's, by its zoo names, for any channel counts `N` and `M`
//! (read off the checkpoint): `bmshj2018-hyperprior` (Ballé et al. 2018, a scale hyperprior),
//! `mbt2018-mean` (its mean-and-scale variant) and `mbt2018` (Minnen et al. 2018, the same
//! with a serial 5×5 masked context model). They share the GDN transforms and the factorized
//! prior of the hyper-latent.

pub mod transforms;

use std::collections::BTreeMap;
use std::path::Path;

use burn_store::TensorSnapshot;
use burn_store::pytorch::PytorchReader;

/// A CompressAI architecture Ember imports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Bmshj2018Hyperprior,
    Mbt2018Mean,
    Mbt2018,
}

/// The channel counts of a checkpoint: `N` in the transforms and the hyper-latent, `M` in the
/// latent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub n: usize,
    pub m: usize,
}

impl Arch {
    pub const ALL: [Arch; 3] = [Arch::Bmshj2018Hyperprior, Arch::Mbt2018Mean, Arch::Mbt2018];

    /// The name in CompressAI's zoo.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Bmshj2018Hyperprior => "bmshj2018-hyperprior",
            Arch::Mbt2018Mean => "mbt2018-mean",
            Arch::Mbt2018 => "mbt2018",
        }
    }

    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Every learned tensor of the architecture at `sizes`, by CompressAI's name, with its
    /// shape, in the order of CompressAI's constructors.
    pub fn parameters(self, Sizes { n, m }: Sizes) -> Vec<(String, Vec<usize>)> {
        let mut p = Vec::new();
        // The analysis and synthesis transforms: 5×5 convolutions of stride 2 with GDNs
        // between them; a transposed convolution's weight is `[in, out, k, k]`.
        let chans = [3, n, n, n, m];
        for i in 0..4 {
            conv(&mut p, &format!("g_a.{}", 2 * i), chans[i + 1], chans[i], 5);
            if i < 3 {
                gdn(&mut p, &format!("g_a.{}", 2 * i + 1), n);
            }
        }
        for i in 0..4 {
            let (cin, cout) = (chans[4 - i], chans[3 - i]);
            deconv(&mut p, &format!("g_s.{}", 2 * i), cin, cout, 5);
            if i < 3 {
                gdn(&mut p, &format!("g_s.{}", 2 * i + 1), n);
            }
        }
        // The hyper-latent's factorized prior: per channel, a 1→3→3→3→1 monotone network.
        let eb = "entropy_bottleneck";
        p.push((format!("{eb}.quantiles"), vec![n, 1, 3]));
        let widths = [1, 3, 3, 3, 3, 1];
        for k in 0..5 {
            p.push((
                format!("{eb}.matrices.{k}"),
                vec![n, widths[k + 1], widths[k]],
            ));
        }
        for k in 0..5 {
            p.push((format!("{eb}.biases.{k}"), vec![n, widths[k + 1], 1]));
        }
        for k in 0..4 {
            p.push((format!("{eb}.factors.{k}"), vec![n, widths[k + 1], 1]));
        }
        conv(&mut p, "h_a.0", n, m, 3);
        conv(&mut p, "h_a.2", n, n, 5);
        conv(&mut p, "h_a.4", n, n, 5);
        match self {
            Arch::Bmshj2018Hyperprior => {
                deconv(&mut p, "h_s.0", n, n, 5);
                deconv(&mut p, "h_s.2", n, n, 5);
                conv(&mut p, "h_s.4", m, n, 3);
            }
            Arch::Mbt2018Mean | Arch::Mbt2018 => {
                let mid = m * 3 / 2;
                deconv(&mut p, "h_s.0", n, m, 5);
                deconv(&mut p, "h_s.2", m, mid, 5);
                conv(&mut p, "h_s.4", 2 * m, mid, 3);
            }
        }
        if self == Arch::Mbt2018 {
            conv(&mut p, "entropy_parameters.0", m * 10 / 3, m * 12 / 3, 1);
            conv(&mut p, "entropy_parameters.2", m * 8 / 3, m * 10 / 3, 1);
            conv(&mut p, "entropy_parameters.4", m * 6 / 3, m * 8 / 3, 1);
            conv(&mut p, "context_prediction", 2 * m, m, 5);
        }
        p
    }
}

fn conv(p: &mut Vec<(String, Vec<usize>)>, at: &str, cout: usize, cin: usize, k: usize) {
    p.push((format!("{at}.weight"), vec![cout, cin, k, k]));
    p.push((format!("{at}.bias"), vec![cout]));
}

fn deconv(p: &mut Vec<(String, Vec<usize>)>, at: &str, cin: usize, cout: usize, k: usize) {
    p.push((format!("{at}.weight"), vec![cin, cout, k, k]));
    p.push((format!("{at}.bias"), vec![cout]));
}

fn gdn(p: &mut Vec<(String, Vec<usize>)>, at: &str, c: usize) {
    p.push((format!("{at}.beta"), vec![c]));
    p.push((format!("{at}.gamma"), vec![c, c]));
}

/// Whether `key` names a buffer that CompressAI keeps beside the parameters and import does
/// not read: the reparametrizations' constants (fixed in CompressAI's code), the entropy
/// tables `update()` builds (Ember builds its own from the parameters), and the context
/// model's mask (fixed by the architecture).
fn is_derived(key: &str) -> bool {
    const SUFFIXES: [&str; 9] = [
        ".pedestal",
        ".bound",
        "._quantized_cdf",
        "._offset",
        "._cdf_length",
        "entropy_bottleneck.target",
        "gaussian_conditional.scale_table",
        "gaussian_conditional.scale_bound",
        "context_prediction.mask",
    ];
    SUFFIXES.iter().any(|s| key.ends_with(s))
}

/// A CompressAI checkpoint's tensors by name, with a training wrapper's prefix removed.
pub struct StateDict {
    tensors: BTreeMap<String, TensorSnapshot>,
}

impl StateDict {
    /// Reads `path`: a state_dict, or a checkpoint that holds one under `"state_dict"`.
    pub fn read(path: &Path) -> Result<Self, String> {
        let failed = |e: burn_store::pytorch::PytorchError| {
            format!(
                "{}: not a readable PyTorch checkpoint ({e})",
                path.display()
            )
        };
        let mut reader = PytorchReader::new(path).map_err(failed)?;
        // A training checkpoint also holds the optimizers' state: only the model's is read.
        if reader.keys().iter().any(|k| k.starts_with("state_dict.")) {
            reader = PytorchReader::with_top_level_key(path, "state_dict").map_err(failed)?;
        }
        let tensors = reader
            .into_tensors()
            .into_iter()
            .map(|(k, t)| (k.strip_prefix("module.").unwrap_or(&k).to_string(), t))
            .collect();
        Ok(Self { tensors })
    }

    /// The values of the tensor `key`, as f32 in row-major order.
    pub fn values(&self, key: &str) -> Result<Vec<f32>, String> {
        let t = self
            .tensors
            .get(key)
            .ok_or_else(|| format!("the checkpoint has no {key}"))?;
        t.to_data()
            .map_err(|e| format!("cannot read {key}: {e}"))?
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| format!("cannot read {key}: {e:?}"))
    }

    /// The channel counts of the checkpoint, if it is a model of `arch`: every parameter of
    /// the architecture present with its shape, and nothing else but CompressAI's buffers.
    /// The error names the first difference.
    pub fn check(&self, arch: Arch) -> Result<Sizes, String> {
        let name = arch.name();
        let dims = |key: &str| self.tensors.get(key).map(|t| t.shape.as_slice().to_vec());
        let sizes = match (dims("g_a.0.weight"), dims("g_a.6.weight")) {
            (Some(first), Some(last)) if first.len() == 4 && last.len() == 4 => Sizes {
                n: first[0],
                m: last[0],
            },
            _ => {
                return Err(format!(
                    "not {name}: it has no analysis transform (g_a.0.weight and g_a.6.weight, \
                     as 4-d tensors)"
                ));
            }
        };
        let expected = arch.parameters(sizes);
        for (key, want) in &expected {
            match self.tensors.get(key) {
                None => {
                    return Err(format!(
                        "not {name}: {key} is missing ({name} with N={}, M={} has it as \
                         {want:?})",
                        sizes.n, sizes.m
                    ));
                }
                Some(t) if t.shape.as_slice() != want.as_slice() => {
                    return Err(format!(
                        "not {name}: {key} is {:?}, where {name} with N={}, M={} has {want:?}",
                        t.shape.as_slice(),
                        sizes.n,
                        sizes.m
                    ));
                }
                Some(t) if !t.dtype.is_float() => {
                    return Err(format!("not {name}: {key} holds {:?}, not floats", t.dtype));
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = self
            .tensors
            .keys()
            .find(|k| !is_derived(k) && !expected.iter().any(|(e, _)| e == *k))
        {
            return Err(format!("not {name}: it has {extra}, which {name} has not"));
        }
        Ok(sizes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixtures of `scripts/compressai-fixtures.py`: one model of each architecture with
    /// N = 8, M = 12, made by CompressAI itself.
    pub(super) fn fixture(arch: Arch) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/compressai")
            .join(format!("{}.pth.tar", arch.name()))
    }

    const SIZES: Sizes = Sizes { n: 8, m: 12 };

    #[test]
    fn each_architecture_reads_as_itself_with_its_channel_counts() {
        for arch in Arch::ALL {
            let dict = StateDict::read(&fixture(arch)).unwrap();
            assert_eq!(dict.check(arch), Ok(SIZES), "{}", arch.name());
            // What CompressAI saved is exactly the parameter list plus its buffers.
            let learned: Vec<(String, Vec<usize>)> = dict
                .tensors
                .iter()
                .filter(|(k, _)| !is_derived(k))
                .map(|(k, t)| (k.clone(), t.shape.as_slice().to_vec()))
                .collect();
            let mut expected = arch.parameters(SIZES);
            expected.sort();
            assert_eq!(learned, expected, "{}", arch.name());
            assert_eq!(Arch::from_name(arch.name()), Some(arch));
        }
    }

    #[test]
    fn a_checkpoint_of_another_architecture_is_refused_in_one_line() {
        for arch in Arch::ALL {
            let dict = StateDict::read(&fixture(arch)).unwrap();
            for other in Arch::ALL.into_iter().filter(|&o| o != arch) {
                let err = dict.check(other).unwrap_err();
                assert!(
                    err.starts_with(&format!("not {}: ", other.name()))
                        && ["h_s.", "entropy_parameters.", "context_prediction."]
                            .iter()
                            .any(|k| err.contains(k))
                        && err.lines().count() == 1,
                    "{} as {}: {err}",
                    arch.name(),
                    other.name()
                );
            }
        }
    }

    #[test]
    fn a_file_that_is_not_a_checkpoint_is_refused_in_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pth.tar");
        std::fs::write(&path, b"not a pickle").unwrap();
        let err = StateDict::read(&path).err().unwrap();
        assert!(err.contains("not a readable PyTorch checkpoint"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(StateDict::read(&dir.path().join("missing.pth")).is_err());
    }
}
