//! A 16550A UART on eight I/O ports, built on rust-vmm's `vm-superio`.
//!
//! `vm_superio::Serial` holds the register state machine (DLAB, IER, IIR,
//! LCR, MCR, LSR, MSR, scratch, the 64-byte receive FIFO, loopback); this
//! module puts it on a [`Bus`](crate::Bus), feeds its interrupts to our
//! [`Interrupt`] and keeps guest mistakes from reaching it:
//!
//! - only one-byte accesses reach the UART (the 8250 driver uses `inb`/`outb`);
//!   a wider read answers `0xff` bytes, a wider write is dropped;
//! - offsets past the eight registers read `0xff` and ignore writes;
//! - a failing writer or interrupt loses the byte or the edge and is logged
//!   (once per failure streak for output); it never stops the guest.
//!
//! The conventional ISA places are COM1 at `0x3f8` (IRQ 4) and COM2 at
//! `0x2f8` (IRQ 3); the VMM picks.

use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;

use vm_superio::Trigger;
use vm_superio::serial::{Error as UartError, NoEvents};

use crate::{BusDevice, DeviceAction, Error, Interrupt};

/// Register offsets from the base port (16550A datasheet, table 2). With
/// LCR.DLAB set, offsets 0 and 1 are the divisor latch instead.
pub mod reg {
    /// Receive buffer (read) / transmit holding register (write).
    pub const DATA: u64 = 0;
    /// Interrupt enable.
    pub const IER: u64 = 1;
    /// Interrupt identification (read) / FIFO control (write).
    pub const IIR: u64 = 2;
    /// Line control.
    pub const LCR: u64 = 3;
    /// Modem control.
    pub const MCR: u64 = 4;
    /// Line status.
    pub const LSR: u64 = 5;
    /// Modem status.
    pub const MSR: u64 = 6;
    /// Scratch.
    pub const SCR: u64 = 7;
}

/// Line status bits (LSR, offset 5).
pub mod lsr {
    /// A byte waits in the receive FIFO.
    pub const DATA_READY: u8 = 0b0000_0001;
    /// The transmit holding register is empty.
    pub const THR_EMPTY: u8 = 0b0010_0000;
    /// The transmitter is idle.
    pub const IDLE: u8 = 0b0100_0000;
}

/// What a read answers when it cannot reach a register: a floating bus.
const FLOATING: u8 = 0xff;

/// Lets `vm_superio` raise our interrupt (the newtype Firecracker uses for
/// its eventfd, over our trait instead).
struct IrqTrigger(Arc<dyn Interrupt>);

impl Trigger for IrqTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.trigger()
    }
}

impl fmt::Debug for IrqTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IrqTrigger")
    }
}

/// A 16550A UART whose output goes to `W` (the launch's stdout, a log file,
/// a `Vec<u8>` in tests).
///
/// ```
/// use std::sync::Arc;
/// use devices::{BusDevice, NoInterrupt};
/// use devices::legacy::Serial;
///
/// let mut serial = Serial::new(Arc::new(NoInterrupt), Vec::new());
/// for &byte in b"ok\n" {
///     serial.write(0, &[byte]); // THR
/// }
/// assert_eq!(serial.writer(), b"ok\n");
/// ```
pub struct Serial<W: Write> {
    uart: vm_superio::Serial<IrqTrigger, NoEvents, W>,
    /// Set while writing to `W` keeps failing, so the log says it once.
    output_failing: bool,
}

impl<W: Write> fmt::Debug for Serial<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serial")
            .field("state", &self.uart.state())
            .field("output_failing", &self.output_failing)
            .finish()
    }
}

impl<W: Write> Serial<W> {
    /// How many ports the UART occupies on the bus.
    pub const PORT_LEN: u64 = 8;

    /// A UART in its power-on state that raises `interrupt` and writes the
    /// guest's output to `out`.
    pub fn new(interrupt: Arc<dyn Interrupt>, out: W) -> Self {
        Self {
            uart: vm_superio::Serial::new(IrqTrigger(interrupt), out),
            output_failing: false,
        }
    }

    /// The writer the guest's output goes to.
    pub fn writer(&self) -> &W {
        self.uart.writer()
    }

    /// The writer the guest's output goes to, mutably.
    pub fn writer_mut(&mut self) -> &mut W {
        self.uart.writer_mut()
    }

    /// Gives the writer back.
    pub fn into_writer(self) -> W {
        self.uart.into_writer()
    }

    /// How many more bytes the receive FIFO can take.
    pub fn fifo_capacity(&self) -> usize {
        self.uart.fifo_capacity()
    }

    /// Queues `input` for the guest to read (host stdin, say) and raises the
    /// receive interrupt; returns how many bytes fit. Check
    /// [`fifo_capacity`](Self::fifo_capacity) first: a full FIFO is
    /// [`Error::SerialFifoFull`]. In loopback mode nothing is queued.
    pub fn enqueue_input(&mut self, input: &[u8]) -> Result<usize, Error> {
        self.uart.enqueue_raw_bytes(input).map_err(|e| match e {
            UartError::Trigger(source) => Error::Interrupt {
                device: "serial",
                source,
            },
            UartError::IOError(e) => Error::SerialIo(e),
            UartError::FullFifo => Error::SerialFifoFull { len: input.len() },
        })
    }
}

impl<W: Write + Send> BusDevice for Serial<W> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (register(offset), data) {
            (Some(reg), [byte]) => *byte = self.uart.read(reg),
            (_, data) => {
                tracing::debug!(offset, len = data.len(), "serial: unsupported read");
                data.fill(FLOATING);
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceAction {
        let (Some(reg), &[value]) = (register(offset), data) else {
            tracing::debug!(
                offset,
                len = data.len(),
                "serial: unsupported write dropped"
            );
            return DeviceAction::None;
        };
        match self.uart.write(reg, value) {
            Ok(()) => self.output_failing = false,
            Err(UartError::Trigger(e)) => {
                tracing::warn!(error = %e, "serial: cannot raise the interrupt");
            }
            Err(UartError::IOError(e)) => {
                if !self.output_failing {
                    tracing::warn!(error = %e, "serial: output failing, dropping bytes");
                }
                self.output_failing = true;
            }
            // Only input fills the FIFO; a write never reports it.
            Err(UartError::FullFifo) => {}
        }
        DeviceAction::None
    }
}

/// The UART register at `offset`, if there is one.
fn register(offset: u64) -> Option<u8> {
    if offset <= reg::SCR {
        u8::try_from(offset).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::{Bus, NoInterrupt};

    /// IER bit: received data available interrupt.
    const IER_RDA: u8 = 0b01;
    /// IER bit: transmit holding register empty interrupt.
    const IER_THR_EMPTY: u8 = 0b10;
    /// MCR bit: loopback.
    const MCR_LOOP: u8 = 0b1_0000;

    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Interrupt for Counter {
        fn trigger(&self) -> io::Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    struct Broken;

    impl Interrupt for Broken {
        fn trigger(&self) -> io::Result<()> {
            Err(io::Error::other("irqfd gone"))
        }
    }

    impl Write for Broken {
        fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("stdout closed"))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn serial() -> Serial<Vec<u8>> {
        Serial::new(Arc::new(NoInterrupt), Vec::new())
    }

    fn read(s: &mut Serial<Vec<u8>>, offset: u64) -> u8 {
        let mut byte = [0];
        s.read(offset, &mut byte);
        byte[0]
    }

    #[test]
    fn thr_bytes_reach_the_writer() {
        let mut s = serial();
        for &b in b"hello" {
            assert_eq!(s.write(reg::DATA, &[b]), DeviceAction::None);
        }
        assert_eq!(s.writer(), b"hello");
        assert_eq!(s.into_writer(), b"hello");
    }

    #[test]
    fn lsr_reads_thr_empty() {
        let mut s = serial();
        let lsr_value = read(&mut s, reg::LSR);
        assert_eq!(lsr_value & lsr::THR_EMPTY, lsr::THR_EMPTY);
        assert_eq!(lsr_value & lsr::IDLE, lsr::IDLE);
        assert_eq!(lsr_value & lsr::DATA_READY, 0);
        s.write(reg::DATA, b"x");
        assert_eq!(read(&mut s, reg::LSR) & lsr::THR_EMPTY, lsr::THR_EMPTY);
    }

    #[test]
    fn reading_an_empty_rx_fifo_returns_zero() {
        let mut s = serial();
        for _ in 0..3 {
            assert_eq!(read(&mut s, reg::DATA), 0);
        }
        assert_eq!(read(&mut s, reg::LSR) & lsr::DATA_READY, 0);
    }

    #[test]
    fn enqueued_input_is_read_in_order() {
        let mut s = serial();
        assert_eq!(s.enqueue_input(b"ab").expect("fifo empty"), 2);
        assert_eq!(read(&mut s, reg::LSR) & lsr::DATA_READY, lsr::DATA_READY);
        assert_eq!(read(&mut s, reg::DATA), b'a');
        assert_eq!(read(&mut s, reg::DATA), b'b');
        assert_eq!(read(&mut s, reg::LSR) & lsr::DATA_READY, 0);
    }

    #[test]
    fn full_fifo_is_an_error() {
        let mut s = serial();
        let cap = s.fifo_capacity();
        let big = vec![b'z'; cap + 10];
        assert_eq!(s.enqueue_input(&big).expect("fifo empty"), cap);
        assert_eq!(s.fifo_capacity(), 0);
        assert!(matches!(
            s.enqueue_input(b"more"),
            Err(Error::SerialFifoFull { len: 4 })
        ));
    }

    #[test]
    fn loopback_reads_back_what_was_written() {
        let mut s = serial();
        s.write(reg::MCR, &[MCR_LOOP]);
        s.write(reg::DATA, b"h");
        assert_eq!(read(&mut s, reg::DATA), b'h');
        assert!(
            s.writer().is_empty(),
            "loopback bytes do not leave the UART"
        );
    }

    #[test]
    fn scratch_register_round_trips() {
        let mut s = serial();
        s.write(reg::SCR, &[0x5a]);
        assert_eq!(read(&mut s, reg::SCR), 0x5a);
    }

    #[test]
    fn thr_empty_interrupt_reaches_our_interrupt() {
        let irq = Arc::new(Counter::default());
        let mut s = Serial::new(irq.clone(), Vec::new());
        s.write(reg::IER, &[IER_THR_EMPTY]);
        let after_ier = irq.0.load(Ordering::SeqCst);
        assert_eq!(after_ier, 1, "enabling THRE with an empty THR fires");
        // The driver acknowledges by reading IIR: "THR empty" is pending.
        assert_eq!(read(&mut s, reg::IIR) & 0x0f, 0b0010);
        s.write(reg::DATA, b"x");
        assert_eq!(irq.0.load(Ordering::SeqCst), after_ier + 1);
    }

    #[test]
    fn odd_access_sizes_never_reach_the_uart() {
        let mut s = serial();
        let mut wide = [0u8; 4];
        s.read(reg::LSR, &mut wide);
        assert_eq!(wide, [FLOATING; 4]);
        s.read(reg::DATA, &mut []);
        assert_eq!(s.write(reg::DATA, b"wide"), DeviceAction::None);
        assert_eq!(s.write(reg::DATA, &[]), DeviceAction::None);
        assert!(s.writer().is_empty());
    }

    #[test]
    fn offsets_past_the_registers_are_harmless() {
        let mut s = serial();
        for offset in [8, 0xff, 0x100, 0x1_0000_0003, u64::MAX] {
            assert_eq!(read(&mut s, offset), FLOATING, "offset {offset:#x}");
            assert_eq!(s.write(offset, b"x"), DeviceAction::None);
        }
        assert!(
            s.writer().is_empty(),
            "0x1_0000_0003 must not alias LCR/THR"
        );
    }

    #[test]
    fn failing_output_and_interrupt_do_not_panic() {
        let mut s = Serial::new(Arc::new(Broken), Broken);
        s.write(reg::IER, &[IER_RDA | IER_THR_EMPTY]);
        for &b in b"lost" {
            assert_eq!(s.write(reg::DATA, &[b]), DeviceAction::None);
        }
        assert!(matches!(
            s.enqueue_input(b"in"),
            Err(Error::Interrupt {
                device: "serial",
                ..
            })
        ));
    }

    #[test]
    fn on_a_bus_at_com1() {
        let mut bus = Bus::new();
        let serial = Arc::new(Mutex::new(serial()));
        bus.insert(serial.clone(), 0x3f8, Serial::<Vec<u8>>::PORT_LEN)
            .expect("empty bus");
        bus.write(0x3f8, b"h").expect("THR is mapped");
        let mut lsr_value = [0];
        bus.read(0x3fd, &mut lsr_value).expect("LSR is mapped");
        assert_eq!(lsr_value[0] & lsr::THR_EMPTY, lsr::THR_EMPTY);
        assert!(bus.read(0x400, &mut lsr_value).is_err());
        assert_eq!(serial.lock().expect("no panics").writer(), b"h");
    }
}
