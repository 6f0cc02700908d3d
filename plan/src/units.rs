//! Sizes and CPU counts as people write them on a command line.

use crate::Error;

/// Parses `256M`, `1g`, `64MiB`, `1024k` or plain bytes (powers of 1024, as docker does).
pub fn parse_size(text: &str) -> Result<u64, Error> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| Error::NotASize(text.to_owned()))?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(Error::SizeUnit {
                text: text.to_owned(),
                unit: unit.to_owned(),
            });
        }
    };
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(Error::SizeOutOfRange(text.to_owned()));
    }
    Ok(bytes as u64)
}

/// Parses a CPU count such as `1.5`: a positive number.
pub fn parse_cpus(text: &str) -> Result<f64, Error> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(Error::NotACpuCount(text.to_owned())),
    }
}

/// Seconds from `30`, `30s`, `500ms` or `2m`.
pub fn parse_duration(s: &str) -> Result<f64, Error> {
    let (number, scale) = if let Some(ms) = s.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(sec) = s.strip_suffix('s') {
        (sec, 1.0)
    } else if let Some(min) = s.strip_suffix('m') {
        (min, 60.0)
    } else {
        (s, 1.0)
    };
    match number.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => {
            let seconds = value * scale;
            if fits_duration(seconds) {
                Ok(seconds)
            } else {
                Err(Error::DurationTooLong(s.to_owned()))
            }
        }
        _ => Err(Error::NotADuration(s.to_owned())),
    }
}

/// Whether `seconds` is positive and converts to a [`std::time::Duration`]: the microVM's
/// run loop converts with `Duration::from_secs_f64`, which panics on infinity, NaN and
/// values past `u64::MAX` seconds (`timeout(1e300)`, or `"1e308m"` once scaled).
pub(crate) fn fits_duration(seconds: f64) -> bool {
    seconds > 0.0 && std::time::Duration::try_from_secs_f64(seconds).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units_like_docker() {
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(matches!(
            parse_size("12 parsecs"),
            Err(Error::SizeUnit { unit, .. }) if unit == " parsecs"
        ));
        assert!(parse_size("M").is_err());
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("30").unwrap(), 30.0);
        assert_eq!(parse_duration("1.5s").unwrap(), 1.5);
        assert_eq!(parse_duration("500ms").unwrap(), 0.5);
        assert_eq!(parse_duration("2m").unwrap(), 120.0);
        // The last two would panic as a Duration: too long, and infinite once scaled.
        for bad in ["", "0", "-1", "x", "1h", "nan", "1e300", "1e308m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpus_must_be_positive() {
        assert_eq!(parse_cpus("1.5").unwrap(), 1.5);
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("-1").is_err());
        assert!(parse_cpus("lots").is_err());
    }
}
