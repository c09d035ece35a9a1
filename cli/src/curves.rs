//! Rate-distortion curves read from results files: ours (`ember eval`), CompressAI's
//! published results (`{"name", "results": {"bpp", "psnr-rgb", "ms-ssim-rgb"}}`) and the MLIC
//! releases' flat `{"bpp", "psnr"}` files.

use std::path::Path;

use crate::bdrate::RdPoints;

/// Which distortion axis a comparison uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Metric {
    /// PSNR-RGB in dB.
    Psnr,
    /// MS-SSIM-RGB in dB, `−10·log10(1 − MS-SSIM)`, as papers plot it.
    MsSsim,
}

impl Metric {
    pub fn label(self) -> &'static str {
        match self {
            Metric::Psnr => "PSNR-RGB (dB)",
            Metric::MsSsim => "MS-SSIM-RGB (dB)",
        }
    }
}

/// One named curve.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    pub name: String,
    pub bpp: Vec<f64>,
    pub psnr: Option<Vec<f64>>,
    /// Linear MS-SSIM values.
    pub ms_ssim: Option<Vec<f64>>,
}

impl Curve {
    /// Reads a results file; the name defaults to the file stem.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        Self::parse(&text, &stem).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str, default_name: &str) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let results = v.get("results").unwrap_or(&v);
        let series = |keys: &[&str]| -> Result<Option<Vec<f64>>, String> {
            let Some(arr) = keys.iter().find_map(|k| results.get(*k)) else {
                return Ok(None);
            };
            let arr = arr
                .as_array()
                .ok_or_else(|| format!("{} is not an array", keys[0]))?;
            // A null (an image set too small for MS-SSIM) drops the whole series.
            Ok(arr.iter().map(serde_json::Value::as_f64).collect())
        };
        let bpp = series(&["bpp"])?.ok_or("no bpp series")?;
        let psnr = series(&["psnr-rgb", "psnr"])?;
        // Some papers publish MS-SSIM already in dB; keep it linear here like the others.
        let ms_ssim = match series(&["ms-ssim-rgb", "ms-ssim"])? {
            Some(s) => Some(s),
            None => series(&["ms-ssim-db-rgb"])?
                .map(|db| db.iter().map(|d| 1.0 - 10f64.powf(-d / 10.0)).collect()),
        };
        for (name, s) in [("PSNR", &psnr), ("MS-SSIM", &ms_ssim)] {
            if let Some(s) = s
                && s.len() != bpp.len()
            {
                return Err(format!(
                    "{} bpp values but {} {name} values",
                    bpp.len(),
                    s.len()
                ));
            }
        }
        if psnr.is_none() && ms_ssim.is_none() {
            return Err("neither a PSNR nor an MS-SSIM series".into());
        }
        let name = v
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or(default_name)
            .to_string();
        Ok(Self {
            name,
            bpp,
            psnr,
            ms_ssim,
        })
    }

    /// The curve on `metric`'s axis, if it has that metric.
    pub fn points(&self, metric: Metric) -> Option<RdPoints> {
        let quality = match metric {
            Metric::Psnr => self.psnr.clone()?,
            Metric::MsSsim => self
                .ms_ssim
                .as_ref()?
                .iter()
                .map(|&m| -10.0 * (1.0 - m).max(1e-12).log10())
                .collect(),
        };
        Some(RdPoints {
            rate: self.bpp.clone(),
            quality,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_compressai_and_flat_files() {
        let c = Curve::parse(
            r#"{"name":"VTM","results":{"bpp":[0.1,0.2],"psnr-rgb":[28,30],"ms-ssim-rgb":[0.9,0.99]}}"#,
            "x",
        )
        .unwrap();
        assert_eq!(c.name, "VTM");
        let ms = c.points(Metric::MsSsim).unwrap();
        assert!((ms.quality[0] - 10.0).abs() < 1e-9 && (ms.quality[1] - 20.0).abs() < 1e-9);
        let db = Curve::parse(r#"{"results":{"bpp":[0.1],"ms-ssim-db-rgb":[13.0]}}"#, "p").unwrap();
        let back = db.points(Metric::MsSsim).unwrap().quality[0];
        assert!((back - 13.0).abs() < 1e-9, "{back}");
        let flat = Curve::parse(r#"{"psnr":[29.2,30.7],"bpp":[0.11,0.19]}"#, "mlic_mse").unwrap();
        assert_eq!(flat.name, "mlic_mse");
        assert!(flat.points(Metric::MsSsim).is_none());
        // A null MS-SSIM (images too small) leaves the PSNR curve usable.
        let ours = Curve::parse(
            r#"{"name":"e","results":{"bpp":[0.1],"psnr-rgb":[30],"ms-ssim-rgb":[null]}}"#,
            "x",
        )
        .unwrap();
        assert!(ours.ms_ssim.is_none() && ours.psnr.is_some());
        for bad in [
            "[]",
            r#"{"results":{"psnr":[1]}}"#,
            r#"{"bpp":[1,2],"psnr":[1]}"#,
            r#"{"bpp":[1]}"#,
            "nope",
        ] {
            assert!(Curve::parse(bad, "x").is_err(), "{bad}");
        }
    }

    /// Every published anchor file parses (skipped when ../shared is absent).
    #[test]
    fn published_anchors_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/anchors");
        let Ok(sets) = std::fs::read_dir(&dir) else {
            crate::skip_test(format!("{} not found", dir.display()));
            return;
        };
        let mut n = 0;
        for set in sets {
            for f in std::fs::read_dir(set.unwrap().path()).unwrap() {
                let p = f.unwrap().path();
                if p.extension().is_some_and(|e| e == "json") {
                    Curve::load(&p).unwrap();
                    n += 1;
                }
            }
        }
        assert!(n > 10, "only {n} anchor files");
    }
}
