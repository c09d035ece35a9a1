//! The registry of model architectures a bitstream may name.
//!
//! A stream records which architecture produced it (and a fingerprint of the exact weights,
//! see [`bitstream::Header::weights_hash`]); a decoder refuses streams whose model it does
//! not know rather than decoding garbage. Ids are never reused.

pub use bitstream::ModelId;

/// File name of the shipped default model.
pub const DEFAULT_MODEL_FILE: &str = "ember-mrc-v1.safetensors";

/// Where `ember` looks for its model when no `--model` is given, in order: `$EMBER_MODEL`;
/// beside the executable (`ember-mrc-v1.safetensors` or `models/…`); the repository's
/// `models/` folder of the source tree the binary was built from.
pub fn model_search_path() -> Vec<std::path::PathBuf> {
    let mut paths = Vec::new();
    if let Some(p) = std::env::var_os("EMBER_MODEL") {
        paths.push(p.into());
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.to_path_buf()))
    {
        paths.push(dir.join(DEFAULT_MODEL_FILE));
        paths.push(dir.join("models").join(DEFAULT_MODEL_FILE));
    }
    paths.push(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("models")
            .join(DEFAULT_MODEL_FILE),
    );
    paths
}

/// The model file to use: `explicit` if given, else the first existing entry of
/// [`model_search_path`].
pub fn find_model(explicit: Option<&std::path::Path>) -> Result<std::path::PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let candidates = model_search_path();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            let list: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            format!(
                "no model file found (looked for {}); pass --model or set EMBER_MODEL",
                list.join(", ")
            )
        })
}
