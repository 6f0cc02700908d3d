//! The qcow2 header: parsing, validation and the features capsule accepts, on `core` alone.
//!
//! Follows QEMU's `docs/interop/qcow2.txt` ("Header", "Header extensions"). Everything here
//! reads a byte slice holding the start of an image file (the header and its extensions live
//! in the first cluster) and allocates nothing, so a firmware or another VMM can reuse it
//! without std. Every field is untrusted: parsing checks each against the file's own limits
//! and fails with a [`HeaderError`] naming the field and its value, never a panic.

use core::fmt;

/// The first four bytes of every qcow2 file (`QFI\xfb`).
pub const MAGIC: [u8; 4] = *b"QFI\xfb";

/// Bytes of a version 2 header; version 3 headers are at least [`V3_HEADER_LEN`].
pub const V2_HEADER_LEN: usize = 72;

/// Bytes of a version 3 header without the optional compression type (`header_length` is at
/// least this).
pub const V3_HEADER_LEN: usize = 104;

/// The smallest and largest `cluster_bits` QEMU accepts (512 bytes to 2 MiB).
pub const CLUSTER_BITS: core::ops::RangeInclusive<u32> = 9..=21;

/// The largest L1 table QEMU opens, bytes (`QCOW_MAX_L1_SIZE`).
pub const MAX_L1_BYTES: u64 = 32 << 20;

/// The largest refcount table QEMU opens, bytes (`QCOW_MAX_REFTABLE_SIZE`).
pub const MAX_REFCOUNT_TABLE_BYTES: u64 = 8 << 20;

/// The longest backing file name QEMU writes, bytes.
pub const MAX_BACKING_NAME: u32 = 1023;

/// Header extension type: the backing file's format name (`raw`, `qcow2`).
pub const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;

/// Header extension type: the end of the extensions.
pub const EXT_END: u32 = 0;

/// Incompatible feature bits (qcow2.txt, header bytes 72-79).
pub mod incompatible {
    /// Refcounts may be stale (lazy refcounts): they must be rebuilt before use.
    pub const DIRTY: u64 = 1 << 0;
    /// Some data structure may be corrupt: no writes allowed.
    pub const CORRUPT: u64 = 1 << 1;
    /// Guest data lives in a separate file named by a header extension.
    pub const EXTERNAL_DATA_FILE: u64 = 1 << 2;
    /// `compression_type` is not zlib.
    pub const COMPRESSION_TYPE: u64 = 1 << 3;
    /// L2 entries are 128 bits with subcluster allocation.
    pub const EXTENDED_L2: u64 = 1 << 4;
}

/// `compression_type` value for zlib/deflate, the only one capsule reads.
pub const COMPRESSION_ZLIB: u8 = 0;

/// The fixed part of a qcow2 header, big-endian on disk, parsed and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// Where the backing file's name starts in the file, bytes (0: no backing file).
    pub backing_file_offset: u64,
    /// Length of the backing file's name, bytes.
    pub backing_file_size: u32,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// The virtual disk's size, bytes.
    pub size: u64,
    /// 0 none, 1 AES, 2 LUKS.
    pub crypt_method: u32,
    /// Entries in the active L1 table.
    pub l1_size: u32,
    /// Where the active L1 table starts, bytes (cluster-aligned).
    pub l1_table_offset: u64,
    /// Where the refcount table starts, bytes (cluster-aligned).
    pub refcount_table_offset: u64,
    /// Clusters the refcount table occupies.
    pub refcount_table_clusters: u32,
    /// Internal snapshots in the image.
    pub nb_snapshots: u32,
    /// Where the snapshot table starts, bytes.
    pub snapshots_offset: u64,
    /// Feature bits an implementation must understand ([`incompatible`]); 0 for version 2.
    pub incompatible_features: u64,
    /// Feature bits that may be ignored; 0 for version 2.
    pub compatible_features: u64,
    /// Feature bits a writer that ignores them clears; 0 for version 2.
    pub autoclear_features: u64,
    /// log2 of a refcount's width in bits (4 for version 2).
    pub refcount_order: u32,
    /// Length of the header, bytes; the extensions follow it.
    pub header_length: u32,
    /// 0 zlib, 1 zstd (valid only with [`incompatible::COMPRESSION_TYPE`]).
    pub compression_type: u8,
}

/// What is wrong with a qcow2 header, or which of its features capsule does not support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than the header needs.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes there.
        got: usize,
    },
    /// The file does not start with [`MAGIC`].
    BadMagic,
    /// A version other than 2 or 3.
    Version(u32),
    /// `cluster_bits` outside [`CLUSTER_BITS`].
    ClusterBits(u32),
    /// A version 3 `header_length` below [`V3_HEADER_LEN`], unaligned or past the first cluster.
    HeaderLength(u32),
    /// `refcount_order` above 6 (64-bit refcounts).
    RefcountOrder(u32),
    /// The virtual size is not a whole number of 512-byte sectors.
    Size(u64),
    /// A table offset that is not cluster-aligned or is zero.
    Misaligned {
        /// Which table.
        table: &'static str,
        /// Its offset, bytes.
        offset: u64,
    },
    /// An L1 table too small for the disk, or larger than [`MAX_L1_BYTES`].
    L1Size {
        /// Entries in the header.
        l1_size: u32,
        /// Entries the virtual size needs.
        needed: u64,
    },
    /// A refcount table larger than [`MAX_REFCOUNT_TABLE_BYTES`].
    RefcountTableClusters(u32),
    /// The backing file's name is not inside the first cluster, or longer than
    /// [`MAX_BACKING_NAME`].
    BackingName {
        /// Its offset, bytes.
        offset: u64,
        /// Its length, bytes.
        size: u32,
    },
    /// A header extension runs past the first cluster.
    Extension {
        /// Where the extension starts, bytes.
        offset: u64,
    },
    /// The image is encrypted (`crypt_method` 1 AES or 2 LUKS).
    Encrypted(u32),
    /// The dirty bit is set: refcounts are stale.
    Dirty,
    /// The corrupt bit is set.
    Corrupt,
    /// Guest data is in an external data file.
    ExternalDataFile,
    /// Compressed clusters use a compression other than zlib.
    CompressionType(u8),
    /// Extended L2 entries (subclusters).
    ExtendedL2,
    /// Incompatible feature bits qcow2.txt does not define.
    UnknownFeatures(u64),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { needed, got } => {
                write!(f, "qcow2 header truncated: {got} bytes, {needed} needed")
            }
            Self::BadMagic => write!(f, "not a qcow2 image (no QFI\\xfb magic)"),
            Self::Version(v) => write!(f, "qcow2 version {v} is not supported (only 2 and 3)"),
            Self::ClusterBits(b) => {
                write!(
                    f,
                    "qcow2 cluster_bits {b} is outside 9..=21 (512 B to 2 MiB)"
                )
            }
            Self::HeaderLength(l) => write!(f, "qcow2 header_length {l} is invalid"),
            Self::RefcountOrder(o) => write!(f, "qcow2 refcount_order {o} is above 6"),
            Self::Size(s) => {
                write!(
                    f,
                    "qcow2 virtual size {s} is not a multiple of 512-byte sectors"
                )
            }
            Self::Misaligned { table, offset } => {
                write!(f, "qcow2 {table} offset {offset:#x} is not cluster-aligned")
            }
            Self::L1Size { l1_size, needed } => write!(
                f,
                "qcow2 L1 table of {l1_size} entries does not fit the disk ({needed} needed, \
                 at most {} bytes)",
                MAX_L1_BYTES
            ),
            Self::RefcountTableClusters(c) => write!(
                f,
                "qcow2 refcount table of {c} clusters exceeds {MAX_REFCOUNT_TABLE_BYTES} bytes"
            ),
            Self::BackingName { offset, size } => write!(
                f,
                "qcow2 backing file name ({size} bytes at {offset:#x}) is not inside the first \
                 cluster or longer than {MAX_BACKING_NAME} bytes"
            ),
            Self::Extension { offset } => {
                write!(
                    f,
                    "qcow2 header extension at {offset:#x} runs past the first cluster"
                )
            }
            Self::Encrypted(m) => write!(
                f,
                "the qcow2 image is encrypted ({}), which capsule does not support",
                match m {
                    1 => "AES",
                    2 => "LUKS",
                    _ => "unknown method",
                }
            ),
            Self::Dirty => write!(
                f,
                "the qcow2 dirty bit is set (lazy refcounts never written back): run \
                 `qemu-img check -r all` on it first"
            ),
            Self::Corrupt => write!(
                f,
                "the qcow2 corrupt bit is set: run `qemu-img check -r all` on it first"
            ),
            Self::ExternalDataFile => write!(
                f,
                "the qcow2 image keeps its data in an external data file, which capsule does \
                 not support"
            ),
            Self::CompressionType(t) => write!(
                f,
                "the qcow2 image's compression type is {} ({t}); capsule reads only zlib",
                if t == 1 { "zstd" } else { "unknown" }
            ),
            Self::ExtendedL2 => write!(
                f,
                "the qcow2 image uses extended L2 entries (subclusters), which capsule does \
                 not support"
            ),
            Self::UnknownFeatures(bits) => {
                write!(
                    f,
                    "the qcow2 image has unknown incompatible feature bits {bits:#x}"
                )
            }
        }
    }
}

impl core::error::Error for HeaderError {}

fn be32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_be_bytes(b)
}

fn be64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_be_bytes(b)
}

impl Header {
    /// Parses and checks the header at the start of `buf` (at least [`V2_HEADER_LEN`] bytes,
    /// [`V3_HEADER_LEN`] for version 3), rejecting values QEMU would reject: bad magic or
    /// version, cluster size outside 512 B..2 MiB, unaligned tables, an L1 table that does not
    /// cover the disk or exceeds [`MAX_L1_BYTES`]. Whether capsule supports the image's
    /// features is [`Header::check_supported`]'s question.
    pub fn parse(buf: &[u8]) -> Result<Header, HeaderError> {
        if buf.len() < V2_HEADER_LEN {
            return Err(HeaderError::Truncated {
                needed: V2_HEADER_LEN,
                got: buf.len(),
            });
        }
        if buf[..4] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = be32(buf, 4);
        if version != 2 && version != 3 {
            return Err(HeaderError::Version(version));
        }
        let mut header = Header {
            version,
            backing_file_offset: be64(buf, 8),
            backing_file_size: be32(buf, 16),
            cluster_bits: be32(buf, 20),
            size: be64(buf, 24),
            crypt_method: be32(buf, 32),
            l1_size: be32(buf, 36),
            l1_table_offset: be64(buf, 40),
            refcount_table_offset: be64(buf, 48),
            refcount_table_clusters: be32(buf, 56),
            nb_snapshots: be32(buf, 60),
            snapshots_offset: be64(buf, 64),
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: 4,
            header_length: V2_HEADER_LEN as u32,
            compression_type: COMPRESSION_ZLIB,
        };
        if !CLUSTER_BITS.contains(&header.cluster_bits) {
            return Err(HeaderError::ClusterBits(header.cluster_bits));
        }
        if version == 3 {
            if buf.len() < V3_HEADER_LEN {
                return Err(HeaderError::Truncated {
                    needed: V3_HEADER_LEN,
                    got: buf.len(),
                });
            }
            header.incompatible_features = be64(buf, 72);
            header.compatible_features = be64(buf, 80);
            header.autoclear_features = be64(buf, 88);
            header.refcount_order = be32(buf, 96);
            header.header_length = be32(buf, 100);
            let len = u64::from(header.header_length);
            if len < V3_HEADER_LEN as u64 || len % 8 != 0 || len > header.cluster_size() {
                return Err(HeaderError::HeaderLength(header.header_length));
            }
            if len > V3_HEADER_LEN as u64 {
                // Byte 104 is present only in headers long enough to hold it.
                header.compression_type =
                    *buf.get(V3_HEADER_LEN).ok_or(HeaderError::Truncated {
                        needed: V3_HEADER_LEN + 1,
                        got: buf.len(),
                    })?;
            }
        }
        if header.refcount_order > 6 {
            return Err(HeaderError::RefcountOrder(header.refcount_order));
        }
        if header.size % 512 != 0 {
            return Err(HeaderError::Size(header.size));
        }
        let cluster_mask = header.cluster_size() - 1;
        for (table, offset) in [
            ("L1 table", header.l1_table_offset),
            ("refcount table", header.refcount_table_offset),
        ] {
            if offset == 0 || offset & cluster_mask != 0 {
                return Err(HeaderError::Misaligned { table, offset });
            }
        }
        if header.nb_snapshots != 0 && header.snapshots_offset & cluster_mask != 0 {
            return Err(HeaderError::Misaligned {
                table: "snapshot table",
                offset: header.snapshots_offset,
            });
        }
        let needed = header.size.div_ceil(header.l2_coverage());
        if u64::from(header.l1_size) < needed || u64::from(header.l1_size) * 8 > MAX_L1_BYTES {
            return Err(HeaderError::L1Size {
                l1_size: header.l1_size,
                needed,
            });
        }
        if u64::from(header.refcount_table_clusters) << header.cluster_bits
            > MAX_REFCOUNT_TABLE_BYTES
        {
            return Err(HeaderError::RefcountTableClusters(
                header.refcount_table_clusters,
            ));
        }
        Ok(header)
    }

    /// Bytes per cluster (512 B to 2 MiB).
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Bytes of virtual disk one L2 table maps (cluster_size / 8 entries of one cluster each).
    pub fn l2_coverage(&self) -> u64 {
        // cluster_bits <= 21, so this is at most 2^39.
        1 << (2 * self.cluster_bits - 3)
    }

    /// Refuses what capsule cannot read and write safely: encryption, the dirty and corrupt
    /// bits, an external data file, compression other than zlib, extended L2 entries and
    /// feature bits qcow2.txt does not define. Version 2 images and internal snapshots are
    /// accepted (writes copy shared clusters, as the COPIED flag asks).
    pub fn check_supported(&self) -> Result<(), HeaderError> {
        use incompatible::*;
        if self.crypt_method != 0 {
            return Err(HeaderError::Encrypted(self.crypt_method));
        }
        let bits = self.incompatible_features;
        if bits & CORRUPT != 0 {
            return Err(HeaderError::Corrupt);
        }
        if bits & DIRTY != 0 {
            return Err(HeaderError::Dirty);
        }
        if bits & EXTERNAL_DATA_FILE != 0 {
            return Err(HeaderError::ExternalDataFile);
        }
        if bits & COMPRESSION_TYPE != 0 || self.compression_type != COMPRESSION_ZLIB {
            return Err(HeaderError::CompressionType(self.compression_type));
        }
        if bits & EXTENDED_L2 != 0 {
            return Err(HeaderError::ExtendedL2);
        }
        let unknown =
            bits & !(DIRTY | CORRUPT | EXTERNAL_DATA_FILE | COMPRESSION_TYPE | EXTENDED_L2);
        if unknown != 0 {
            return Err(HeaderError::UnknownFeatures(unknown));
        }
        Ok(())
    }

    /// The backing file's name as stored (bytes, not necessarily UTF-8), from `first_cluster`
    /// (the file's first bytes, up to one cluster); `None` without a backing file.
    pub fn backing_file_name<'a>(
        &self,
        first_cluster: &'a [u8],
    ) -> Result<Option<&'a [u8]>, HeaderError> {
        if self.backing_file_offset == 0 {
            return Ok(None);
        }
        let bad = HeaderError::BackingName {
            offset: self.backing_file_offset,
            size: self.backing_file_size,
        };
        let end = self
            .backing_file_offset
            .checked_add(u64::from(self.backing_file_size))
            .ok_or(bad)?;
        if self.backing_file_size > MAX_BACKING_NAME || end > self.cluster_size() {
            return Err(bad);
        }
        let start = usize::try_from(self.backing_file_offset).map_err(|_| bad)?;
        let end = usize::try_from(end).map_err(|_| bad)?;
        first_cluster
            .get(start..end)
            .map(Some)
            .ok_or(HeaderError::Truncated {
                needed: end,
                got: first_cluster.len(),
            })
    }

    /// The header extensions after the header (version 3; none for version 2), from
    /// `first_cluster`, each as `(type, data)`, up to the end marker.
    pub fn extensions<'a>(&self, first_cluster: &'a [u8]) -> Extensions<'a> {
        let end = usize::try_from(self.cluster_size()).unwrap_or(usize::MAX);
        Extensions {
            buf: &first_cluster[..first_cluster.len().min(end)],
            at: if self.version == 2 {
                usize::MAX
            } else {
                self.header_length as usize
            },
        }
    }

    /// The backing file format extension's value (`b"raw"`, `b"qcow2"`), if present.
    pub fn backing_format<'a>(
        &self,
        first_cluster: &'a [u8],
    ) -> Result<Option<&'a [u8]>, HeaderError> {
        for ext in self.extensions(first_cluster) {
            let (kind, data) = ext?;
            if kind == EXT_BACKING_FORMAT {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }
}

/// Iterator over a version 3 header's extensions ([`Header::extensions`]): `(type, data)`
/// pairs, or one [`HeaderError::Extension`] for an extension past the first cluster.
#[derive(Debug, Clone)]
pub struct Extensions<'a> {
    buf: &'a [u8],
    /// Offset of the next extension; `usize::MAX` once done.
    at: usize,
}

impl<'a> Iterator for Extensions<'a> {
    type Item = Result<(u32, &'a [u8]), HeaderError>;

    fn next(&mut self) -> Option<Self::Item> {
        let at = self.at;
        if at == usize::MAX {
            return None;
        }
        let bad = HeaderError::Extension { offset: at as u64 };
        let Some(head) = at.checked_add(8).and_then(|end| self.buf.get(at..end)) else {
            self.at = usize::MAX;
            return Some(Err(bad));
        };
        let kind = be32(head, 0);
        let len = be32(head, 4) as usize;
        if kind == EXT_END {
            self.at = usize::MAX;
            return None;
        }
        let data_at = at + 8;
        let Some(data) = data_at
            .checked_add(len)
            .and_then(|end| self.buf.get(data_at..end))
        else {
            self.at = usize::MAX;
            return Some(Err(bad));
        };
        // Each extension's data is padded to a multiple of 8 bytes.
        self.at = data_at.saturating_add(len.next_multiple_of(8));
        Some(Ok((kind, data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid version 3 header of a 1 MiB disk with 64 KiB clusters, in one cluster, as
    /// `qemu-img create -f qcow2 x 1M` lays it out (L1 at 0x30000, refcount table at 0x10000),
    /// with a backing file name and a backing format extension.
    fn image() -> Vec<u8> {
        let mut b = vec![0u8; 65536];
        b[..4].copy_from_slice(&MAGIC);
        let put32 =
            |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_be_bytes());
        let put64 =
            |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_be_bytes());
        put32(&mut b, 4, 3);
        put64(&mut b, 8, 0x200);
        put32(&mut b, 16, 8);
        put32(&mut b, 20, 16);
        put64(&mut b, 24, 1 << 20);
        put32(&mut b, 36, 1);
        put64(&mut b, 40, 0x30000);
        put64(&mut b, 48, 0x10000);
        put32(&mut b, 56, 1);
        put32(&mut b, 96, 4);
        put32(&mut b, 100, 112);
        put32(&mut b, 112, EXT_BACKING_FORMAT);
        put32(&mut b, 116, 5);
        b[120..125].copy_from_slice(b"qcow2");
        b[0x200..0x208].copy_from_slice(b"base.img");
        b
    }

    fn with(at: usize, bytes: &[u8]) -> Vec<u8> {
        let mut b = image();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    }

    #[test]
    fn parses_a_version_3_header_its_backing_name_and_format() {
        let b = image();
        let h = Header::parse(&b).expect("valid");
        assert_eq!(
            (h.version, h.cluster_size(), h.size, h.header_length),
            (3, 65536, 1 << 20, 112)
        );
        assert_eq!(h.check_supported(), Ok(()));
        assert_eq!(h.backing_file_name(&b), Ok(Some(&b"base.img"[..])));
        assert_eq!(h.backing_format(&b), Ok(Some(&b"qcow2"[..])));
    }

    #[test]
    fn version_2_has_no_extensions_and_16_bit_refcounts() {
        let b = with(4, &2u32.to_be_bytes());
        let h = Header::parse(&b).expect("valid");
        assert_eq!((h.refcount_order, h.incompatible_features), (4, 0));
        assert_eq!(h.backing_format(&b), Ok(None));
    }

    #[test]
    fn rejects_short_input_bad_magic_and_version() {
        assert_eq!(
            Header::parse(&image()[..71]),
            Err(HeaderError::Truncated {
                needed: 72,
                got: 71
            })
        );
        assert_eq!(
            Header::parse(&image()[..100]),
            Err(HeaderError::Truncated {
                needed: 104,
                got: 100
            })
        );
        assert_eq!(
            Header::parse(&image()[..104]),
            Err(HeaderError::Truncated {
                needed: 105,
                got: 104
            })
        );
        assert_eq!(
            Header::parse(&with(0, b"QFI\0")),
            Err(HeaderError::BadMagic)
        );
        assert_eq!(
            Header::parse(&with(4, &1u32.to_be_bytes())),
            Err(HeaderError::Version(1))
        );
    }

    #[test]
    fn rejects_cluster_bits_outside_512_bytes_to_2_mib() {
        for bits in [8u32, 22, u32::MAX] {
            assert_eq!(
                Header::parse(&with(20, &bits.to_be_bytes())),
                Err(HeaderError::ClusterBits(bits))
            );
        }
    }

    #[test]
    fn rejects_bad_header_length_refcount_order_and_size() {
        for len in [96u32, 110, 65544] {
            assert_eq!(
                Header::parse(&with(100, &len.to_be_bytes())),
                Err(HeaderError::HeaderLength(len))
            );
        }
        assert_eq!(
            Header::parse(&with(96, &7u32.to_be_bytes())),
            Err(HeaderError::RefcountOrder(7))
        );
        assert_eq!(
            Header::parse(&with(24, &1000u64.to_be_bytes())),
            Err(HeaderError::Size(1000))
        );
    }

    #[test]
    fn rejects_unaligned_tables() {
        assert_eq!(
            Header::parse(&with(40, &0x30200u64.to_be_bytes())),
            Err(HeaderError::Misaligned {
                table: "L1 table",
                offset: 0x30200
            })
        );
        assert_eq!(
            Header::parse(&with(48, &0u64.to_be_bytes())),
            Err(HeaderError::Misaligned {
                table: "refcount table",
                offset: 0
            })
        );
    }

    #[test]
    fn rejects_an_l1_table_too_small_or_too_big() {
        // 1 TiB needs 2048 L2 tables of 512 MiB each.
        assert_eq!(
            Header::parse(&with(24, &(1u64 << 40).to_be_bytes())),
            Err(HeaderError::L1Size {
                l1_size: 1,
                needed: 2048
            })
        );
        assert_eq!(
            Header::parse(&with(36, &u32::MAX.to_be_bytes())),
            Err(HeaderError::L1Size {
                l1_size: u32::MAX,
                needed: 1
            })
        );
        assert_eq!(
            Header::parse(&with(56, &129u32.to_be_bytes())),
            Err(HeaderError::RefcountTableClusters(129))
        );
    }

    #[test]
    fn rejects_a_backing_name_outside_the_first_cluster() {
        let b = with(8, &0xfffcu64.to_be_bytes());
        let h = Header::parse(&b).expect("valid header");
        assert_eq!(
            h.backing_file_name(&b),
            Err(HeaderError::BackingName {
                offset: 0xfffc,
                size: 8
            })
        );
        let b = with(8, &u64::MAX.to_be_bytes());
        let h = Header::parse(&b).expect("valid header");
        assert!(matches!(
            h.backing_file_name(&b),
            Err(HeaderError::BackingName { .. })
        ));
        // Inside the cluster but past what was read.
        assert_eq!(
            Header::parse(&image())
                .expect("valid")
                .backing_file_name(&image()[..0x201]),
            Err(HeaderError::Truncated {
                needed: 0x208,
                got: 0x201
            })
        );
    }

    #[test]
    fn rejects_an_extension_past_the_first_cluster() {
        let b = with(116, &0x10000u32.to_be_bytes());
        let h = Header::parse(&b).expect("valid header");
        assert_eq!(
            h.backing_format(&b),
            Err(HeaderError::Extension { offset: 112 })
        );
    }

    #[test]
    fn refuses_each_unsupported_feature() {
        let features = |bits: u64| {
            Header::parse(&with(72, &bits.to_be_bytes()))
                .expect("valid")
                .check_supported()
        };
        assert_eq!(features(incompatible::DIRTY), Err(HeaderError::Dirty));
        assert_eq!(
            features(incompatible::CORRUPT | incompatible::DIRTY),
            Err(HeaderError::Corrupt)
        );
        assert_eq!(
            features(incompatible::EXTERNAL_DATA_FILE),
            Err(HeaderError::ExternalDataFile)
        );
        assert_eq!(
            features(incompatible::EXTENDED_L2),
            Err(HeaderError::ExtendedL2)
        );
        assert_eq!(
            features(1 << 63),
            Err(HeaderError::UnknownFeatures(1 << 63))
        );
        let mut b = with(72, &incompatible::COMPRESSION_TYPE.to_be_bytes());
        b[104] = 1;
        let h = Header::parse(&b).expect("valid");
        assert_eq!(h.check_supported(), Err(HeaderError::CompressionType(1)));
        let h = Header::parse(&with(32, &1u32.to_be_bytes())).expect("valid");
        assert_eq!(h.check_supported(), Err(HeaderError::Encrypted(1)));
    }

    /// Random headers (a fixed xorshift sequence over the valid one) are parsed or refused,
    /// never a panic, and every accessor on what parses stays in bounds.
    #[test]
    fn random_headers_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut b = image();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % 128) as usize;
                b[at] = (state >> 32) as u8;
            }
            let len = (state >> 40) as usize % b.len();
            if let Ok(h) = Header::parse(&b[..len]) {
                let _ = h.check_supported();
                let _ = h.backing_file_name(&b[..len]);
                let _ = h.extensions(&b[..len]).count();
            }
        }
    }
}
