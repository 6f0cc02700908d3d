//! Turning what a script passes into Plan values, with the error a script author reads when
//! a value does not fit: `resources.memory = "12 parsecs": ...`.

use std::path::PathBuf;

use rhai::{Dynamic, EvalAltResult, INT, ImmutableString};

use crate::script_plan::written;
use plan::{parse_cpus, parse_size};

pub(crate) type Refusal = Box<EvalAltResult>;

/// A refusal of `value` for `field`; Rhai adds the position of the call.
pub(crate) fn refuse(field: &str, value: &Dynamic, why: impl std::fmt::Display) -> Refusal {
    format!("{field} = {}: {why}", written(value)).into()
}

/// Bytes from `"256M"`, `"1g"` or an integer such as `256.mib()`.
pub(crate) fn size(field: &str, value: &Dynamic) -> Result<u64, Refusal> {
    if let Some(text) = value.read_lock::<ImmutableString>() {
        return parse_size(&text).map_err(|e| refuse(field, value, e));
    }
    match value.as_int() {
        Ok(n) => u64::try_from(n).map_err(|_| refuse(field, value, "a size cannot be negative")),
        Err(_) => Err(refuse(
            field,
            value,
            "expected a size such as \"256M\" or 256.mib()",
        )),
    }
}

/// A count that must be positive and fit the field, e.g. `pids(64)`.
pub(crate) fn count<T: TryFrom<INT>>(field: &str, value: INT) -> Result<T, Refusal> {
    let shown = Dynamic::from_int(value);
    if value <= 0 {
        return Err(refuse(field, &shown, "expected a positive number"));
    }
    T::try_from(value).map_err(|_| refuse(field, &shown, "too large"))
}

/// CPUs from `1.5`, `2` or `"1.5"`.
pub(crate) fn cpus(field: &str, value: &Dynamic) -> Result<f64, Refusal> {
    let number = if let Some(text) = value.read_lock::<ImmutableString>() {
        return parse_cpus(&text).map_err(|e| refuse(field, value, e));
    } else if let Ok(n) = value.as_int() {
        n as f64
    } else if let Ok(f) = value.as_float() {
        f
    } else {
        return Err(refuse(
            field,
            value,
            "expected a number of CPUs such as 1.5",
        ));
    };
    parse_cpus(&number.to_string()).map_err(|e| refuse(field, value, e))
}

/// Seconds from `30`, `2.5`, `"30s"`, `"500ms"` or `"2m"`.
pub(crate) fn seconds(field: &str, value: &Dynamic) -> Result<f64, Refusal> {
    let text = if let Some(text) = value.read_lock::<ImmutableString>() {
        text.to_string()
    } else if let Ok(n) = value.as_int() {
        n.to_string()
    } else if let Ok(f) = value.as_float() {
        // Debug keeps the exponent (`1e300`), which parses back as the same number and reads
        // better in a refusal than Display's 301 digits.
        format!("{f:?}")
    } else {
        return Err(refuse(
            field,
            value,
            "expected seconds such as 30 or \"500ms\"",
        ));
    };
    plan::parse_duration(&text).map_err(|e| refuse(field, value, e))
}

/// An absolute path: a relative one would depend on where capsule happens to run.
pub(crate) fn absolute_path(field: &str, value: &str) -> Result<PathBuf, Refusal> {
    let path = PathBuf::from(value);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(refuse(
            field,
            &Dynamic::from(value.to_owned()),
            "expected an absolute path (a relative one would depend on where capsule runs)",
        ))
    }
}

/// The strings of an argv-like array.
pub(crate) fn strings(field: &str, value: &rhai::Array) -> Result<Vec<String>, Refusal> {
    value
        .iter()
        .map(|item| {
            item.read_lock::<ImmutableString>()
                .map(|s| s.to_string())
                .ok_or_else(|| refuse(field, item, "expected strings only"))
        })
        .collect()
}

/// One of `accepted`, returned as the index into it.
pub(crate) fn choice(field: &str, value: &str, accepted: &[&str]) -> Result<usize, Refusal> {
    accepted.iter().position(|a| *a == value).ok_or_else(|| {
        let list: Vec<String> = accepted.iter().map(|a| format!("{a:?}")).collect();
        refuse(
            field,
            &Dynamic::from(value.to_owned()),
            format!("expected {}", list.join(", ")),
        )
    })
}
