//! Sizes written the way people say them: `256.mib()`, `bytes("1G")`.

use rhai::plugin::*;

#[export_module]
pub mod units {
    use rhai::INT;

    use crate::api::values::{Refusal, size};

    /// `n` KiB in bytes: `64.kib()`.
    #[rhai_fn(return_raw)]
    pub fn kib(n: INT) -> Result<INT, Refusal> {
        scale(n, 10)
    }

    /// `n` MiB in bytes: `256.mib()`.
    #[rhai_fn(return_raw)]
    pub fn mib(n: INT) -> Result<INT, Refusal> {
        scale(n, 20)
    }

    /// `n` GiB in bytes: `2.gib()`.
    #[rhai_fn(return_raw)]
    pub fn gib(n: INT) -> Result<INT, Refusal> {
        scale(n, 30)
    }

    /// The bytes in a size written as `"256M"`, `"1.5G"` or `"64k"` (powers of 1024, as
    /// docker counts): `host.memory_free < bytes("2G")`.
    #[rhai_fn(return_raw)]
    pub fn bytes(text: &str) -> Result<INT, Refusal> {
        let value = size("bytes", &Dynamic::from(text.to_owned()))?;
        INT::try_from(value).map_err(|_| format!("bytes({text:?}) is too large").into())
    }

    fn scale(n: INT, shift: u32) -> Result<INT, Refusal> {
        n.checked_mul(1 << shift)
            .filter(|bytes| *bytes >= 0)
            .ok_or_else(|| {
                format!("{n} << {shift} is not a size: expected a small positive number").into()
            })
    }
}
