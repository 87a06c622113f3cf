//! Kubernetes resource quantities (`500m`, `0.5`, `128Mi`, `1G`, `1e3`) parsed to whole units.
//!
//! CPU becomes millicores, memory becomes bytes. The grammar is Kubernetes' own: a decimal
//! number, then an optional binary suffix (Ki..Ei), decimal suffix (m, k, M..E) or exponent.

use crate::echo::echo;
use serde::Deserialize;

/// A quantity exactly as written in a manifest; YAML may give it as a string or a number.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RawQuantity {
    /// `"500m"`, `"128Mi"`.
    Text(String),
    /// `1`, `0.5`, `1e3`.
    Number(f64),
}

impl RawQuantity {
    fn text(&self) -> String {
        match self {
            RawQuantity::Text(s) => s.trim().to_string(),
            RawQuantity::Number(n) => n.to_string(),
        }
    }
}

/// CPU in millicores: `"250m"` is 250, `1` is 1000, `"0.5"` is 500. Rounds up, as Kubernetes does.
pub fn cpu_millis(raw: &RawQuantity) -> Result<u64, String> {
    let text = raw.text();
    let value = parse(&text)?;
    to_whole(value * 1000.0, &text)
}

/// Memory in bytes: `"128Mi"` is 134217728, `"1G"` is 10^9. Fractions of a byte round up.
pub fn memory_bytes(raw: &RawQuantity) -> Result<u64, String> {
    let text = raw.text();
    to_whole(parse(&text)?, &text)
}

fn to_whole(value: f64, text: &str) -> Result<u64, String> {
    if !value.is_finite() || value < 0.0 || value > u64::MAX as f64 {
        return Err(format!("quantity {} is out of range", echo(text)));
    }
    Ok(value.ceil() as u64)
}

/// Parses a quantity into its value in base units (cores or bytes) as a float.
fn parse(text: &str) -> Result<f64, String> {
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let bad = || {
        format!(
            "{} is not a quantity: write a number with an optional suffix \
             such as 500m, 0.5, 128Mi or 1G",
            echo(text)
        )
    };
    let digits_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits_end);
    let multiplier = if suffix.is_empty() {
        1.0
    } else if let Some((_, m)) = SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        *m
    } else if let Some(exponent) = suffix.strip_prefix(['e', 'E']) {
        10f64.powi(exponent.parse::<i32>().map_err(|_| bad())?)
    } else {
        return Err(bad());
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    if value < 0.0 {
        return Err(format!("quantity {} must not be negative", echo(text)));
    }
    Ok(value * multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> RawQuantity {
        RawQuantity::Text(s.into())
    }

    #[test]
    fn cpu_forms() {
        assert_eq!(cpu_millis(&text("250m")), Ok(250));
        assert_eq!(cpu_millis(&text("0.5")), Ok(500));
        assert_eq!(cpu_millis(&RawQuantity::Number(2.0)), Ok(2000));
        assert_eq!(cpu_millis(&text("1.0001")), Ok(1001));
    }

    #[test]
    fn memory_forms() {
        assert_eq!(memory_bytes(&text("128Mi")), Ok(128 * 1024 * 1024));
        assert_eq!(memory_bytes(&text("1G")), Ok(1_000_000_000));
        assert_eq!(memory_bytes(&text("1e3")), Ok(1000));
        assert_eq!(memory_bytes(&RawQuantity::Number(64.0)), Ok(64));
    }

    #[test]
    fn rejects_nonsense() {
        assert!(
            memory_bytes(&text("12 apples"))
                .unwrap_err()
                .contains("not a quantity")
        );
        assert!(cpu_millis(&text("-1")).unwrap_err().contains("negative"));
        assert!(memory_bytes(&text("")).is_err());
    }
}
