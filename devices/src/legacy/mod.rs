//! Legacy PC devices on the port-I/O bus.
//!
//! | device | ports (conventional) | what it is for |
//! | --- | --- | --- |
//! | [`Serial`] | 8 (`0x3f8` COM1) | the guest console |
//! | [`ExitPort`] | 1 ([`EXIT_PORT`](crate::EXIT_PORT)) | the guest's exit status |
//! | [`I8042`] | 5 (`0x60..0x65`) | the guest's reset request |
//! | [`AcpiPm`] | 3 (capsule: `0x600..0x603`) | ACPI power-off and reset |

pub mod acpi_pm;
pub mod exit;
pub mod i8042;
pub mod serial;

pub use acpi_pm::AcpiPm;
pub use exit::ExitPort;
pub use i8042::I8042;
pub use serial::Serial;
