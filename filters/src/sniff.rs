//! Attachment types by content, not by file name: a `.pdf` that is a Windows program is an
//! executable here. Each check looks at magic numbers and, for containers, at the few
//! structures that tell macros and encryption; the work is linear in the attachment's
//! size (bounded by `max_message_size`).

use memchr::memmem;

/// The kinds a rule can ask for (`attachment = [...]`), as bits of a [`Kinds`] set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    Pdf = 1,
    Zip = 1 << 1,
    /// PE (Windows), ELF, Mach-O.
    Executable = 1 << 2,
    /// OLE2 (Office 97–2003) or OOXML document.
    Office = 1 << 3,
    /// OLE with a VBA storage, or OOXML with `vbaProject.bin`.
    OfficeMacro = 1 << 4,
    /// ZIP with an entry's encryption flag, encrypted 7z or RAR headers.
    EncryptedArchive = 1 << 5,
    /// 7z or RAR (ZIP is [`Kind::Zip`]).
    Archive = 1 << 6,
}

impl Kind {
    pub const ALL: [(&'static str, Kind); 7] = [
        ("pdf", Kind::Pdf),
        ("zip", Kind::Zip),
        ("executable", Kind::Executable),
        ("office", Kind::Office),
        ("office_macro", Kind::OfficeMacro),
        ("encrypted_archive", Kind::EncryptedArchive),
        ("archive", Kind::Archive),
    ];

    pub fn parse(name: &str) -> Option<Kind> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("", |(n, _)| n)
    }
}

/// A set of kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kinds(pub u16);

impl Kinds {
    pub fn insert(&mut self, k: Kind) {
        self.0 |= k as u16;
    }
    pub fn contains(self, k: Kind) -> bool {
        self.0 & k as u16 != 0
    }
    pub fn intersects(self, other: Kinds) -> bool {
        self.0 & other.0 != 0
    }
    /// The names in this set, for messages.
    pub fn names(self) -> Vec<&'static str> {
        Kind::ALL
            .iter()
            .filter(|(_, k)| self.contains(*k))
            .map(|(n, _)| *n)
            .collect()
    }
}

/// The kinds of every attachment of a parsed message (and of attached messages, one level
/// per attachment mail-parser already parsed).
pub fn message_kinds(message: &mail_parser::Message<'_>) -> Kinds {
    let mut kinds = Kinds::default();
    for part in message.attachments() {
        kinds.0 |= kinds_of(part.contents()).0;
        if let Some(inner) = part.message() {
            for p in inner.attachments() {
                kinds.0 |= kinds_of(p.contents()).0;
            }
        }
    }
    kinds
}

const OLE_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
const SEVEN_Z_MAGIC: &[u8] = &[b'7', b'z', 0xBC, 0xAF, 0x27, 0x1C];
/// 7z's AES-256 + SHA-256 coder id, present in an encrypted archive's header.
const SEVEN_Z_AES: &[u8] = &[0x06, 0xF1, 0x07, 0x01];
const RAR4_MAGIC: &[u8] = b"Rar!\x1a\x07\x00";
const RAR5_MAGIC: &[u8] = b"Rar!\x1a\x07\x01\x00";
const ZIP_LOCAL: &[u8] = b"PK\x03\x04";

/// The kinds of one attachment's bytes.
pub fn kinds_of(data: &[u8]) -> Kinds {
    let mut k = Kinds::default();
    if data.starts_with(b"%PDF-") {
        k.insert(Kind::Pdf);
    } else if is_executable(data) {
        k.insert(Kind::Executable);
    } else if data.starts_with(OLE_MAGIC) {
        k.insert(Kind::Office);
        if ole_has_vba(data) {
            k.insert(Kind::OfficeMacro);
        }
    } else if data.starts_with(ZIP_LOCAL) || data.starts_with(b"PK\x05\x06") {
        k.insert(Kind::Zip);
        zip_entries(data, &mut k);
    } else if data.starts_with(SEVEN_Z_MAGIC) {
        k.insert(Kind::Archive);
        if memmem::find(data, SEVEN_Z_AES).is_some() {
            k.insert(Kind::EncryptedArchive);
        }
    } else if data.starts_with(RAR5_MAGIC) {
        k.insert(Kind::Archive);
        // RAR 5: an archive encryption header (type 1 after CRC32 and size) comes first.
        if rar5_first_header_type(&data[RAR5_MAGIC.len()..]) == Some(4) {
            k.insert(Kind::EncryptedArchive);
        }
    } else if data.starts_with(RAR4_MAGIC) {
        k.insert(Kind::Archive);
        // RAR 4 main header: CRC(2) TYPE(1)=0x73 FLAGS(2); 0x0080 = headers encrypted.
        let h = &data[RAR4_MAGIC.len()..];
        if h.len() >= 5 && h[2] == 0x73 && u16::from_le_bytes([h[3], h[4]]) & 0x0080 != 0 {
            k.insert(Kind::EncryptedArchive);
        }
    }
    k
}

fn is_executable(d: &[u8]) -> bool {
    let pe = d.len() >= 0x40 && d.starts_with(b"MZ") && {
        let at = u32::from_le_bytes([d[0x3C], d[0x3D], d[0x3E], d[0x3F]]) as usize;
        d.get(at..at + 4) == Some(b"PE\0\0")
    };
    let elf = d.starts_with(b"\x7fELF");
    let macho = [
        [0xFE, 0xED, 0xFA, 0xCE],
        [0xFE, 0xED, 0xFA, 0xCF],
        [0xCE, 0xFA, 0xED, 0xFE],
        [0xCF, 0xFA, 0xED, 0xFE],
    ]
    .iter()
    .any(|m| d.starts_with(m));
    pe || elf || macho
}

/// OLE2 with a VBA project: the directory names the `_VBA_PROJECT` stream (UTF-16LE).
fn ole_has_vba(d: &[u8]) -> bool {
    const NAME: &[u8] = b"_\0V\0B\0A\0_\0P\0R\0O\0J\0E\0C\0T\0";
    memmem::find(d, NAME).is_some()
}

/// Walk the ZIP's local file headers: any entry with the encryption flag (bit 0) makes it
/// an encrypted archive; OOXML parts make it Office, `vbaProject.bin` Office with macros.
fn zip_entries(d: &[u8], k: &mut Kinds) {
    for at in memmem::find_iter(d, ZIP_LOCAL) {
        let Some(h) = d.get(at..at + 30) else { break };
        let flags = u16::from_le_bytes([h[6], h[7]]);
        let name_len = u16::from_le_bytes([h[26], h[27]]) as usize;
        let name = d.get(at + 30..at + 30 + name_len).unwrap_or_default();
        if flags & 1 != 0 {
            k.insert(Kind::EncryptedArchive);
        }
        if name == b"[Content_Types].xml" {
            k.insert(Kind::Office);
        }
        if name.ends_with(b"vbaProject.bin") {
            k.insert(Kind::Office);
            k.insert(Kind::OfficeMacro);
        }
    }
}

/// RAR 5 header: CRC32 (4 bytes), then vint size, then vint type.
fn rar5_first_header_type(h: &[u8]) -> Option<u64> {
    let rest = h.get(4..)?;
    let (_, n) = vint(rest)?;
    let (ty, _) = vint(rest.get(n..)?)?;
    Some(ty)
}

fn vint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().take(10).enumerate() {
        v |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[doc(hidden)]
pub mod samples {
    //! Real file headers built byte by byte, as the formats define them (for the tests
    //! here and the gateway's rule tests).

    /// A minimal PE: MZ header whose e_lfanew points at "PE\0\0".
    pub fn pe() -> Vec<u8> {
        let mut d = vec![0u8; 0x80];
        d[..2].copy_from_slice(b"MZ");
        d[0x3C] = 0x40;
        d[0x40..0x44].copy_from_slice(b"PE\0\0");
        d
    }

    /// A ZIP local file header for `name` with `flags`, stored (no compression).
    pub fn zip(entries: &[(&str, u16, &[u8])]) -> Vec<u8> {
        let mut d = Vec::new();
        for (name, flags, data) in entries {
            d.extend_from_slice(b"PK\x03\x04");
            d.extend_from_slice(&20u16.to_le_bytes()); // version
            d.extend_from_slice(&flags.to_le_bytes());
            d.extend_from_slice(&0u16.to_le_bytes()); // method: stored
            d.extend_from_slice(&[0; 8]); // time, date, crc
            d.extend_from_slice(&(data.len() as u32).to_le_bytes());
            d.extend_from_slice(&(data.len() as u32).to_le_bytes());
            d.extend_from_slice(&(name.len() as u16).to_le_bytes());
            d.extend_from_slice(&0u16.to_le_bytes()); // extra
            d.extend_from_slice(name.as_bytes());
            d.extend_from_slice(data);
        }
        d.extend_from_slice(b"PK\x05\x06");
        d.extend_from_slice(&[0; 18]);
        d
    }

    /// An OLE2 compound file start, with a directory entry named `name` (UTF-16LE).
    pub fn ole(name: &str) -> Vec<u8> {
        let mut d = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
        d.resize(512, 0);
        for c in name.encode_utf16() {
            d.extend_from_slice(&c.to_le_bytes());
        }
        d.resize(1024, 0);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::samples::*;
    use super::*;

    fn names(d: &[u8]) -> Vec<&'static str> {
        kinds_of(d).names()
    }

    #[test]
    fn sniffs_by_content() {
        assert_eq!(names(b"%PDF-1.7\n%\xe2\xe3\n1 0 obj"), ["pdf"]);
        assert_eq!(names(&pe()), ["executable"]);
        assert_eq!(names(b"\x7fELF\x02\x01\x01\0\0\0"), ["executable"]);
        assert_eq!(names(&[0xCF, 0xFA, 0xED, 0xFE, 7, 0, 0, 1]), ["executable"]);
        // MZ without a PE header is not a program
        assert!(names(b"MZ just text").is_empty());
        assert_eq!(names(&zip(&[("a.txt", 0, b"hi")])), ["zip"]);
        assert_eq!(
            names(&zip(&[("a.txt", 0, b"hi"), ("b.txt", 1, b"xx")])),
            ["zip", "encrypted_archive"]
        );
        assert_eq!(
            names(&zip(&[
                ("[Content_Types].xml", 0, b"<x/>"),
                ("word/document.xml", 0, b"<x/>")
            ])),
            ["zip", "office"]
        );
        assert_eq!(
            names(&zip(&[
                ("[Content_Types].xml", 0, b"<x/>"),
                ("word/vbaProject.bin", 0, b"\0")
            ])),
            ["zip", "office", "office_macro"]
        );
        assert_eq!(names(&ole("WordDocument")), ["office"]);
        assert_eq!(names(&ole("_VBA_PROJECT")), ["office", "office_macro"]);
        let mut seven = SEVEN_Z_MAGIC.to_vec();
        seven.extend_from_slice(&[0, 4, 1, 2, 3]);
        assert_eq!(names(&seven), ["archive"]);
        seven.extend_from_slice(SEVEN_Z_AES);
        assert_eq!(names(&seven), ["encrypted_archive", "archive"]);
        let mut rar5 = RAR5_MAGIC.to_vec();
        rar5.extend_from_slice(&[0, 0, 0, 0, 0x0C, 0x04]);
        assert_eq!(names(&rar5), ["encrypted_archive", "archive"]);
        let mut rar4 = RAR4_MAGIC.to_vec();
        rar4.extend_from_slice(&[0, 0, 0x73, 0x80, 0x00]);
        assert_eq!(names(&rar4), ["encrypted_archive", "archive"]);
        // a truncated ZIP header is no panic
        assert_eq!(names(b"PK\x03\x04\x14\0\x01"), ["zip"]);
        assert!(names(b"").is_empty());
    }
}
