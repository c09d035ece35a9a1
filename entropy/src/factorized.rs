//! The factorized prior of the hyper-latent `z`: one fixed distribution per channel.
//!
//! Training learns each channel's density as a float function (CompressAI's "entropy
//! bottleneck"). At export the density is evaluated once over the integer range its
//! quantiles span and quantized to a [`CdfTable`]; only these integer tables are stored
//! with the model and used for coding, so the float evaluation never has to be reproduced.

use crate::table::{CdfTable, TableError};

/// Per-channel integer tables of the hyper-latent prior.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FactorizedTables {
    tables: Vec<CdfTable>,
}

impl FactorizedTables {
    /// Quantizes each channel's probability mass function: `pmfs[c][i]` is the probability
    /// of value `offsets[c] + i`, and `tails[c]` the probability of everything outside.
    pub fn from_pmfs(
        offsets: &[i32],
        pmfs: &[Vec<f64>],
        tails: &[f64],
    ) -> Result<Self, TableError> {
        if offsets.len() != pmfs.len()
            || tails.len() != pmfs.len()
            || pmfs.is_empty()
            || pmfs.len() > usize::from(u16::MAX)
        {
            return Err(TableError::BadSize(pmfs.len()));
        }
        let tables = offsets
            .iter()
            .zip(pmfs)
            .zip(tails)
            .map(|((&o, p), &t)| CdfTable::from_probabilities(o, p, t))
            .collect::<Result<_, _>>()?;
        Ok(Self { tables })
    }

    /// Wraps tables that were built elsewhere (one per channel).
    pub fn from_tables(tables: Vec<CdfTable>) -> Result<Self, TableError> {
        if tables.is_empty() || tables.len() > usize::from(u16::MAX) {
            return Err(TableError::BadSize(tables.len()));
        }
        Ok(Self { tables })
    }

    /// The tables, indexed by channel.
    pub fn tables(&self) -> &[CdfTable] {
        &self.tables
    }

    /// Serialized form: channel count (u16 LE), then each table (see [`CdfTable::write_to`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = (self.tables.len() as u16).to_le_bytes().to_vec();
        for t in &self.tables {
            t.write_to(&mut out);
        }
        out
    }

    /// Parses [`to_bytes`](Self::to_bytes) output; rejects trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TableError> {
        let (count, mut rest) = bytes.split_at_checked(2).ok_or(TableError::Malformed)?;
        let count = u16::from_le_bytes([count[0], count[1]]);
        let mut tables = Vec::new();
        for _ in 0..count {
            let (t, r) = CdfTable::read_from(rest)?;
            tables.push(t);
            rest = r;
        }
        if !rest.is_empty() || tables.is_empty() {
            return Err(TableError::Malformed);
        }
        Ok(Self { tables })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn laplace_pmf(n: usize, b: f64) -> Vec<f64> {
        let c = n as f64 / 2.0;
        let w: Vec<f64> = (0..n).map(|i| (-(i as f64 - c).abs() / b).exp()).collect();
        let s: f64 = w.iter().sum();
        w.iter().map(|x| x / s).collect()
    }

    #[test]
    fn bytes_round_trip() {
        let pmfs = vec![laplace_pmf(9, 1.0), laplace_pmf(30, 4.0), vec![1.0]];
        let t = FactorizedTables::from_pmfs(&[-4, -15, 0], &pmfs, &[1e-9, 1e-6, 0.0]).unwrap();
        let back = FactorizedTables::from_bytes(&t.to_bytes()).unwrap();
        assert_eq!(back, t);
        let mut longer = t.to_bytes();
        longer.push(0);
        assert_eq!(
            FactorizedTables::from_bytes(&longer),
            Err(TableError::Malformed)
        );
        assert!(FactorizedTables::from_bytes(&[]).is_err());
    }

    #[test]
    fn garbage_probabilities_still_give_valid_tables() {
        let t = FactorizedTables::from_pmfs(
            &[0],
            &[vec![f64::NAN, -1.0, f64::INFINITY, 0.0]],
            &[f64::NAN],
        )
        .unwrap();
        assert_eq!(t.tables()[0].len(), 4);
    }
}
